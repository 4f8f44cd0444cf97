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

# The journey funnel: started -> each step reached -> an ending in loadgen_journeys_total{outcome}.
LOADGEN_JOURNEYS_STARTED = MetricSpec(
    "loadgen_journeys_started_total", "counter",
    "Journey runs started, by journey (the funnel's entry). Endings are loadgen_journeys_total{outcome}: "
    "completed = ok; abandoned = abandoned (the customer gave up: a failed login not retried, nothing to "
    "transfer or pay from) or rejected (the bank refused the money movement: funds, risk, a declined card); "
    "failed = rate_limited or error (5xx, timeout, no connection, unexpected answer). dropped counts "
    "starts the generator could not serve; they are not in this counter.",
    (L_JOURNEY,),
)
LOADGEN_STEPS_REACHED = MetricSpec(
    "loadgen_journey_steps_reached_total", "counter",
    "Journey runs that reached a step, by journey and step, counted once per run when the step's first "
    "request is sent (so a step counts at least as often as any step after it); login also counts when "
    "the customer's session is still signed in and no login request is needed.",
    (L_JOURNEY, L_STEP),
)

# Journey outcomes (the `outcome` label of loadgen_journeys_total).
JOURNEY_OK = "ok"                  # every step answered as a healthy bank answers
JOURNEY_REJECTED = "rejected"      # the bank refused a money movement (funds, risk, declined card)
JOURNEY_RATE_LIMITED = "rate_limited"
JOURNEY_ERROR = "error"            # a 5xx, a timeout, a refused connection or an unexpected answer
JOURNEY_ABANDONED = "abandoned"    # the customer gave up before the journey's goal (no fault of the bank)
JOURNEY_DROPPED = "dropped"        # never started: every worker was busy (open-loop overload)
JOURNEY_OUTCOMES = (JOURNEY_OK, JOURNEY_ABANDONED, JOURNEY_REJECTED, JOURNEY_RATE_LIMITED, JOURNEY_ERROR,
                    JOURNEY_DROPPED)
# The funnel's endings (the performance-aggregator's stages) -> the outcomes that make each one.
JOURNEY_ENDINGS: dict[str, tuple[str, ...]] = {
    "completed": (JOURNEY_OK,),
    "abandoned": (JOURNEY_ABANDONED, JOURNEY_REJECTED),
    "failed": (JOURNEY_RATE_LIMITED, JOURNEY_ERROR),
}
