"""Every name other code, dashboards, rules and scripts depend on.

Services, ports, HTTP headers, Prometheus metric and label names and span attribute keys are
spelled here and nowhere else. Metric names that come from the seed notes (``transaction_*``)
must not drift: dashboards and rules of both runtimes are written against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

# --- services and ports (DESIGN.md, "Components") -------------------------------------------

GATEWAY = "gateway"
AUTH = "auth"
ACCOUNTS = "accounts"
TRANSACTIONS = "transactions"
PAYMENTS = "payments"
FRAUD = "fraud"
NOTIFICATIONS = "notifications"
TRACE_SINK = "trace-sink"
PROMETHEUS = "prometheus"

BANKING_SERVICES: tuple[str, ...] = (
    GATEWAY, AUTH, ACCOUNTS, TRANSACTIONS, PAYMENTS, FRAUD, NOTIFICATIONS,
)

DEFAULT_PORTS: dict[str, int] = {
    GATEWAY: 8080,
    AUTH: 8081,
    ACCOUNTS: 8082,
    TRANSACTIONS: 8083,
    PAYMENTS: 8084,
    FRAUD: 8085,
    NOTIFICATIONS: 8086,
    TRACE_SINK: 4318,
    PROMETHEUS: 9090,
}

# The simulated external card processor is not a process; it shows up in traces as a peer.
CARD_PROCESSOR = "card-processor"

# --- HTTP headers -------------------------------------------------------------------------------

HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"
HEADER_IDEMPOTENT_REPLAYED = "Idempotent-Replayed"
# Set by the gateway after it verified the caller's token; internal services trust it.
HEADER_CUSTOMER_ID = "X-Customer-Id"
HEADER_TRACE_RESPONSE = "traceresponse"

API_PREFIX = "/api/v1"

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

# Seed metric schema (seeds/001: "Transaction Metrics"). Names and labels must not drift.
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
    "Transaction performance score, 0 (bad) to 100 (meets every objective).",
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

# --- span attributes (banking context; never secrets, tokens or full account numbers) --------

ATTR_TRANSACTION_TYPE = "banking.transaction.type"
ATTR_TRANSACTION_ID = "banking.transaction.id"
ATTR_AMOUNT_BUCKET = "banking.amount.bucket"
ATTR_CURRENCY = "banking.currency"
ATTR_OUTCOME = "banking.outcome"
ATTR_ERROR_CODE = "banking.error_code"
ATTR_RISK_SCORE = "banking.risk.score"
ATTR_RISK_DECISION = "banking.risk.decision"
ATTR_ACCOUNT_MASKED = "banking.account.masked"
ATTR_COUNTERPARTY_MASKED = "banking.counterparty.masked"
ATTR_IDEMPOTENT_REPLAY = "banking.idempotent_replay"
ATTR_MERCHANT_CATEGORY = "banking.merchant.category"
ATTR_NOTIFICATION_KIND = "banking.notification.kind"
ATTR_PEER_SERVICE = "peer.service"

# Upper bounds (major units) of the amount buckets used on spans.
AMOUNT_BUCKETS: tuple[tuple[str, int], ...] = (
    ("lt_10", 10), ("lt_100", 100), ("lt_1k", 1_000), ("lt_10k", 10_000), ("lt_100k", 100_000),
)
AMOUNT_BUCKET_LARGEST = "ge_100k"

# --- identifiers and redaction ----------------------------------------------------------------

ACCOUNT_ID_PREFIX = "acc_"
CUSTOMER_ID_PREFIX = "cus_"
# Patterns of values that must never leave a service in telemetry; the native exporter and the
# Collector's redaction processor both apply them.
ACCOUNT_ID_PATTERN = r"acc_[a-z0-9]{16}"
JWT_PATTERN = r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
CARD_NUMBER_PATTERN = r"(?<!\d)\d{13,19}(?!\d)"
SECRET_QUERY_PARAMETER_PATTERN = r"\b((?i:password|passwd|token|access_token|secret))=[^&\s]+"

SYSTEM_ACCOUNT_CASH = "cash"              # where deposits come from (may go negative)
SYSTEM_ACCOUNT_SETTLEMENT = "settlement"  # where card payments go before the merchant is paid


def system_account_id(purpose: str, currency: str) -> str:
    """The bank's own account for ``purpose`` in ``currency``, e.g. ``sys_settlement_eur``."""
    return f"sys_{purpose}_{currency.lower()}"
