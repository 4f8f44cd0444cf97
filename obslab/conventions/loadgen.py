"""The load generator's metric names."""

from __future__ import annotations

from obslab.conventions.metrics import L_OUTCOME, LATENCY_BUCKETS, MetricSpec

# --- load generator ------------------------------------------------------------------------------

L_JOURNEY = "journey"
L_STEP = "step"

LOADGEN_REQUESTS = MetricSpec(
    "loadgen_requests_total", "counter",
    "Requests the load generator sent, by journey step and outcome (ok, client_error, "
    "server_error, rate_limited, timeout, connection_error).",
    (L_STEP, L_OUTCOME),
)
LOADGEN_DURATION = MetricSpec(
    "loadgen_request_duration_seconds", "histogram",
    "Latency the load generator's clients saw, by journey step.", (L_STEP,), LATENCY_BUCKETS,
)
LOADGEN_JOURNEYS = MetricSpec(
    "loadgen_journeys_total", "counter", "User journeys run, by journey and outcome.",
    (L_JOURNEY, L_OUTCOME),
)
LOADGEN_TARGET_RATE = MetricSpec(
    "loadgen_target_journeys_per_second", "gauge",
    "Journey start rate the generator aims for now (diurnal shape x surge factor).",
)
LOADGEN_FLOOD_RATE = MetricSpec(
    "loadgen_flood_requests_per_second", "gauge",
    "Request rate of an active DDoS flood (0 when none).",
)
LOADGEN_ACTIVE_JOURNEYS = MetricSpec(
    "loadgen_active_journeys", "gauge",
    "Journeys in progress (waiting for an answer or a user thinking).",
)
LOADGEN_USERS = MetricSpec(
    "loadgen_users_ready", "gauge",
    "Simulated customers registered, funded and ready to run journeys.",
)
