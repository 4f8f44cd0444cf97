"""The alert-receiver's metric and label names."""

from __future__ import annotations

from obslab.conventions.metrics import L_STATUS, MetricSpec

# --- alert-receiver (the Alertmanager webhook receiver of the lab) ---------------------------------

L_RECEIVER = "receiver"
L_REASON = "reason"
ALERT_RECEIVER_NOTIFICATIONS = MetricSpec(
    "alert_receiver_notifications_total", "counter",
    "Alertmanager notifications received and stored, by receiver and status (firing/resolved).",
    (L_RECEIVER, L_STATUS),
)
ALERT_RECEIVER_REJECTED = MetricSpec(
    "alert_receiver_rejected_total", "counter",
    "Webhook posts refused with a 4xx (nothing stored), by reason.",
    (L_REASON,),
)
# Drill start and end, as `obslab drill` tells the receiver (dashboards annotate them).
L_DRILL = "drill"
L_RESULT = "result"
DRILL_ACTIVE = MetricSpec(
    "drill_active", "gauge",
    "1 while a drill (or a game day) runs against the lab, 0 after it ended.",
    (L_DRILL,),
)
DRILL_RUNS = MetricSpec(
    "drill_runs_total", "counter",
    "Drills that ended, by result (passed, failed, unscored).",
    (L_DRILL, L_RESULT),
)
