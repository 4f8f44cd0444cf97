"""The fault vocabulary: kinds of faults and their names on the wire."""

from __future__ import annotations

from enum import Enum

from obslab.conventions.metrics import L_SERVICE, MetricSpec

# --- fault control plane ----------------------------------------------------------------------

L_FAULT = "fault"
L_TARGET = "target"
L_ACTION = "action"

FAULT_ACTIVE = MetricSpec(
    "fault_active", "gauge",
    "1 for every fault that is active now, by kind and target (absent when none is).",
    (L_FAULT, L_TARGET),
)
FAULT_EVENTS = MetricSpec(
    "fault_events_total", "counter",
    "Faults set, cleared and expired, by kind and action.",
    (L_FAULT, L_ACTION),
)
# Counted by the process that applies a fault, so a dashboard shows it biting, not just being set.
FAULT_APPLIED = MetricSpec(
    "fault_injections_total", "counter",
    "Requests or statements a fault changed (delayed, failed, refused), by kind.",
    (L_SERVICE, L_FAULT),
)


class FaultKind(str, Enum):
    ERROR_RATE = "error_rate"
    LATENCY = "latency"
    UNAVAILABLE = "unavailable"
    DB_SLOW = "db_slow"
    EXCEPTION_STORM = "exception_storm"
    APP_POOL_CRASH = "app_pool_crash"
    VOLUME_SURGE = "volume_surge"
    DDOS_FLOOD = "ddos_flood"
