"""Prometheus metric names, their help texts and labels (the seed's names must not drift)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

# --- Prometheus metrics ---------------------------------------------------------------------

MetricKind = Literal["counter", "gauge", "histogram"]

# Seconds. Covers a 2 ms cache hit up to a 10 s timeout.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)


@dataclass(frozen=True)
class MetricSpec:
    """A metric family as it appears on /metrics.

    ``name`` is the exposed family name (counters end in ``_total``, units are suffixes), so
    that a grep for the name used in a rule or dashboard lands here.
    """

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total")
        if self.kind != "counter" and self.name.endswith("_total"):
            raise ValueError(f"{self.kind} {self.name!r} must not end in _total")
        if self.buckets is not None and self.kind != "histogram":
            raise ValueError(f"{self.name!r}: only histograms have buckets")


# Label names.
L_SERVICE = "service"
L_METHOD = "method"
L_ROUTE = "route"
L_CODE = "code"
L_PEER = "peer"
L_OUTCOME = "outcome"
L_TYPE = "type"
L_STATUS = "status"
L_ERROR_CODE = "error_code"
L_THRESHOLD = "threshold"
L_DECISION = "decision"
L_KIND = "kind"

# RED metrics of every HTTP service (server side).
HTTP_SERVER_REQUESTS = MetricSpec(
    "http_server_requests_total", "counter",
    "HTTP requests handled, by route and status code.",
    (L_SERVICE, L_METHOD, L_ROUTE, L_CODE),
)
HTTP_SERVER_DURATION = MetricSpec(
    "http_server_request_duration_seconds", "histogram",
    "Time to handle an HTTP request, by route.",
    (L_SERVICE, L_METHOD, L_ROUTE), LATENCY_BUCKETS,
)
HTTP_SERVER_IN_FLIGHT = MetricSpec(
    "http_server_requests_in_flight", "gauge",
    "HTTP requests being handled right now.",
    (L_SERVICE,),
)
# Calls from one service to another (client side), so a slow dependency is visible on the caller.
HTTP_CLIENT_DURATION = MetricSpec(
    "http_client_request_duration_seconds", "histogram",
    "Time of calls to another service, by peer and outcome.",
    (L_SERVICE, L_PEER, L_OUTCOME), LATENCY_BUCKETS,
)
CIRCUIT_BREAKER_OPEN = MetricSpec(
    "circuit_breaker_open", "gauge",
    "1 while the circuit breaker towards a peer is open (calls fail fast).",
    (L_SERVICE, L_PEER),
)

# The seed notes' transaction metric schema. Names and labels must not drift.
TRANSACTION_REQUESTS = MetricSpec(
    "transaction_requests_total", "counter",
    "Money movements requested, by type and final status.",
    (L_TYPE, L_STATUS),
)
TRANSACTION_DURATION = MetricSpec(
    "transaction_duration_seconds", "histogram",
    "End-to-end time of a money movement inside the owning service.",
    (L_TYPE,), LATENCY_BUCKETS,
)
TRANSACTION_FAILURES = MetricSpec(
    "transaction_failures_total", "counter",
    "Money movements that did not complete, by type and error code.",
    (L_TYPE, L_ERROR_CODE),
)
SLOW_TRANSACTIONS = MetricSpec(
    "slow_transactions_total", "counter",
    "Money movements slower than a threshold, by threshold and type.",
    (L_THRESHOLD, L_TYPE),
)
TRANSACTION_PERFORMANCE_SCORE = MetricSpec(
    "transaction_performance_score", "gauge",
    "Transaction performance score, 0 (bad) to 100 (meets every objective), by type "
    "(the performance-aggregator's formula: ml/performance/score.py).",
    (L_TYPE, L_SERVICE),
)

# label value -> seconds; a slow movement counts once per threshold it exceeds.
SLOW_TRANSACTION_THRESHOLDS: dict[str, float] = {"500ms": 0.5, "1s": 1.0, "2s": 2.0}


class TransactionType(str, Enum):
    TRANSFER = "transfer"
    PAYMENT = "payment"


class TransactionStatus(str, Enum):
    """Final status of a money movement (also the ``status`` label value)."""

    COMPLETED = "completed"
    REJECTED = "rejected"      # refused by a business rule (funds, risk, ownership)
    DECLINED = "declined"      # refused by the external card processor
    FAILED = "failed"          # technical failure (a dependency down or broken)


# Business metrics of the other services.
LOGINS = MetricSpec(
    "auth_logins_total", "counter", "Login attempts, by outcome.", (L_OUTCOME,),
)
REGISTRATIONS = MetricSpec(
    "auth_registrations_total", "counter", "Registration attempts, by outcome.", (L_OUTCOME,),
)
FRAUD_ASSESSMENTS = MetricSpec(
    "fraud_assessments_total", "counter", "Risk assessments, by kind and decision.",
    (L_KIND, L_DECISION),
)
FRAUD_RISK_SCORE = MetricSpec(
    "fraud_risk_score", "histogram", "Distribution of risk scores (0-1).",
    (L_KIND,), (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
NOTIFICATIONS_SENT = MetricSpec(
    "notifications_sent_total", "counter", "Notifications delivered, by kind and outcome.",
    (L_KIND, L_OUTCOME),
)
NOTIFICATIONS_DROPPED = MetricSpec(
    "notifications_dropped_total", "counter",
    "Notifications a caller could not hand over (notifications down or slow), by kind.",
    (L_KIND,),
)
PROCESSOR_DURATION = MetricSpec(
    "payment_processor_duration_seconds", "histogram",
    "Latency of the external card processor, by outcome.",
    (L_OUTCOME,), LATENCY_BUCKETS,
)
LEDGER_MOVEMENTS = MetricSpec(
    "accounts_ledger_movements_total", "counter",
    "Ledger movements applied by the accounts service, by kind and outcome.",
    (L_KIND, L_OUTCOME),
)
DB_CONTENTION_RETRIES = MetricSpec(
    "db_transaction_retries_total", "counter",
    "Database transactions retried after a deadlock or lock timeout.",
    (L_SERVICE,),
)
DB_ERRORS = MetricSpec(
    "db_errors_total", "counter",
    "Errors the database driver raised, by kind (connection, timeout, deadlock, integrity, other). "
    "Deadlocks and lock timeouts count here even when the transaction was retried and succeeded "
    "(those retries also count in db_transaction_retries_total); integrity includes uniqueness "
    "conflicts the code expects and answers (a taken username, an idempotency race).",
    (L_SERVICE, L_KIND),
)


class DbErrorKind(str, Enum):
    """The ``kind`` label of ``db_errors_total``: few values, so that the label stays bounded."""

    CONNECTION = "connection"   # could not connect, or the connection was lost or killed
    TIMEOUT = "timeout"         # gave up waiting for a lock (MySQL 1205, SQLite "database is locked")
    DEADLOCK = "deadlock"       # chosen as the deadlock victim (MySQL 1213)
    INTEGRITY = "integrity"     # a constraint refused the write (unique, foreign key, not null)
    OTHER = "other"             # anything else: SQL errors, missing tables, a full disk ...


AUDIT_RECORDS = MetricSpec(
    "gateway_audit_records_total", "counter",
    "State-changing API calls recorded in the gateway audit log, by outcome.",
    (L_OUTCOME,),
)

# Trace sink (native stand-in for Collector + Jaeger).
TRACE_SINK_SPANS = MetricSpec(
    "trace_sink_spans_received_total", "counter", "Spans received over OTLP/HTTP.", (L_SERVICE,),
)
TRACE_SINK_EXPORTS = MetricSpec(
    "trace_sink_export_requests_total", "counter",
    "OTLP/HTTP export requests, by signal and outcome.", (L_KIND, L_OUTCOME),
)

# Every traced service's own span pipeline (the batch processor's exporter), on its /metrics.
SPANS_EXPORTED = MetricSpec(
    "telemetry_spans_exported_total", "counter",
    "Spans handed to the span exporter, by outcome of the export call (success or failure; an "
    "exporter that raised counts as failure).",
    (L_SERVICE, L_OUTCOME),
)
SPANS_DROPPED = MetricSpec(
    "telemetry_spans_dropped_total", "counter",
    "Spans the batch span processor dropped because its queue was full (exporter too slow or down).",
    (L_SERVICE,),
)
SPAN_EXPORT_SUCCESS = "success"
SPAN_EXPORT_FAILURE = "failure"

# Gateway edge: per-client behaviour without a per-client label (cardinality stays bounded).
GATEWAY_RATE_LIMITED = MetricSpec(
    "gateway_rate_limited_total", "counter",
    "Requests refused with 429 because their client exceeded its rate limit.",
)
GATEWAY_ACTIVE_CLIENTS = MetricSpec(
    "gateway_active_clients", "gauge",
    "Distinct client addresses seen in the last minute.",
)
GATEWAY_TOP_CLIENT_SHARE = MetricSpec(
    "gateway_top_client_share", "gauge",
    "Share (0-1) of the last minute's requests sent by the busiest client address.",
)

# --- Business KPIs measured where they happen (the performance-aggregator reads them) ----------
# Never a customer, account or merchant name as a label: every label value below is from a fixed set.

L_CURRENCY = "currency"
L_MERCHANT_CATEGORY = "merchant_category"
L_WINDOW = "window"

# Major units (2.50 EUR is 2.5): from a coffee to a month's salary; above 10000 lands in +Inf.
TRANSACTION_VALUE_BUCKETS: tuple[float, ...] = (
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
)
TRANSACTION_VALUE = MetricSpec(
    "transaction_value", "histogram",
    "Amount of each completed money movement (transfer, payment) in major units of its currency "
    "(2.50 EUR is 2.5), by type and currency; sums add up only within one currency.",
    (L_TYPE, L_CURRENCY), TRANSACTION_VALUE_BUCKETS,
)
PAYMENTS_BY_CATEGORY = MetricSpec(
    "payments_by_category_total", "counter",
    "Payment requests that reached a final status (completed, rejected, declined, failed), by the "
    "merchant's category (groceries, utilities, entertainment, travel, retail, gambling, other); "
    "counted with transaction_requests_total{type=\"payment\"}.",
    (L_MERCHANT_CATEGORY, L_STATUS),
)


class MerchantCategory(str, Enum):
    """The ``merchant_category`` label: few values whatever merchant a customer names (unknown: other).
    Which merchant is in which category: services/payments/categories.py."""

    GROCERIES = "groceries"
    UTILITIES = "utilities"          # power, water, phone
    ENTERTAINMENT = "entertainment"  # streaming, music
    TRAVEL = "travel"                # rail, fuel
    RETAIL = "retail"
    GAMBLING = "gambling"            # what the fraud rules treat as a high-risk category
    OTHER = "other"


GATEWAY_ACTIVE_CUSTOMERS = MetricSpec(
    "gateway_active_customers", "gauge",
    "Distinct authenticated customers (from their verified access token) who sent a request through "
    "this gateway process within the window (5m, 1h); ids are never exposed. Per process: customers "
    "may reach several gateway replicas, so do not sum across instances.",
    (L_WINDOW,),
)
# window label value -> seconds.
ACTIVE_CUSTOMER_WINDOWS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}
