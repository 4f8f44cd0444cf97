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
FAULT_INJECTOR = "fault-injector"
IIS_MOCK = "iis-mock"
# No API of its own; the port serves its /metrics (requests sent, outcomes, client-side latency).
LOAD_GENERATOR = "load-generator"
ALERT_RECEIVER = "alert-receiver"
ALERTMANAGER = "alertmanager"
DDOS_DETECTOR = "ddos-detector"
BASELINER = "baseliner"
ML_SERVICES: tuple[str, ...] = (DDOS_DETECTOR, BASELINER)

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
    FAULT_INJECTOR: 8094,
    IIS_MOCK: 9182,
    LOAD_GENERATOR: 8096,
    ALERT_RECEIVER: 8095,
    ALERTMANAGER: 9093,
    DDOS_DETECTOR: 8091,
    BASELINER: 8092,
}

# The simulated external card processor is not a process; it shows up in traces as a peer.
CARD_PROCESSOR = "card-processor"

# --- HTTP headers -------------------------------------------------------------------------------

HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"
HEADER_IDEMPOTENT_REPLAYED = "Idempotent-Replayed"
# Service-to-service trust (obslab/platform/identity.py): every internal call carries the
# caller's short-lived signed service token; a call on behalf of a customer also carries the
# customer assertion the gateway signed, forwarded unchanged by the services in between.
HEADER_SERVICE_TOKEN = "X-Obslab-Service-Token"
HEADER_CUSTOMER_ASSERTION = "X-Obslab-Customer"
# The client address the gateway established (read only from an authenticated gateway call).
HEADER_CLIENT_ADDRESS = "X-Obslab-Client-Address"
HEADER_TRACE_RESPONSE = "traceresponse"
# Honoured by the gateway only from a configured proxy (OBSLAB_TRUSTED_PROXIES) or the lab's own
# load generator (it simulates the internet's many clients and proves it with its service token).
HEADER_FORWARDED_FOR = "X-Forwarded-For"
# Who set or cleared a fault, for the fault audit log (free text, e.g. "cli:alice", "drill:db-latency").
HEADER_ACTOR = "X-Obslab-Actor"

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


# --- Windows IIS (seeds/001: "Windows IIS Metrics"; names and labels must not drift) -----------

L_SITE = "site"
L_APP_POOL = "app_pool"
L_APP_NAME = "app_name"
L_EXCEPTION_TYPE = "exception_type"


@dataclass(frozen=True)
class IisSite:
    """One IIS site with its application pool and .NET application."""

    site: str
    app_pool: str
    app_name: str
    share: float    # of the estate's base load


IIS_SITES: tuple[IisSite, ...] = (
    IisSite("OnlineBanking", "OnlineBankingAppPool", "OnlineBanking", 0.50),
    IisSite("MobileAPI", "MobileAPIAppPool", "MobileAPI", 0.35),
    IisSite("CorporatePortal", "CorporatePortalAppPool", "CorporatePortal", 0.15),
)

# IIS worker process states as Windows reports them (WAS): the gauge's value is the state code.
IIS_APP_POOL_RUNNING = 3
IIS_APP_POOL_STOPPED = 5   # crashed and disabled by rapid-fail protection

# Seconds. Around the seed's Gaussian(50 ms, 20 ms), with room for slow-response faults.
IIS_EXECUTION_TIME_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0,
)

IIS_REQUESTS = MetricSpec(
    "windows_iis_requests_total", "counter", "Requests served by an IIS site, by HTTP method.",
    (L_METHOD, L_SITE),
)
IIS_CURRENT_CONNECTIONS = MetricSpec(
    "windows_iis_current_connections", "gauge", "Open connections to an IIS site.", (L_SITE,),
)
IIS_SERVER_ERRORS = MetricSpec(
    "windows_iis_server_errors_total", "counter", "Responses with a 5xx status.", (L_SITE,),
)
IIS_CLIENT_ERRORS = MetricSpec(
    "windows_iis_client_errors_total", "counter", "Responses with a 4xx status (mostly 404).", (L_SITE,),
)
IIS_EXECUTION_TIME = MetricSpec(
    "windows_iis_request_execution_time", "histogram",
    "Time to execute a request, in seconds.", (L_SITE,), IIS_EXECUTION_TIME_BUCKETS,
)
IIS_APP_POOL_STATE = MetricSpec(
    "windows_iis_app_pool_state", "gauge",
    "State code of an application pool (3 running, 5 stopped).", (L_APP_POOL,),
)
NETFRAMEWORK_EXCEPTIONS = MetricSpec(
    "windows_netframework_exceptions_thrown_total", "counter",
    ".NET exceptions thrown, by application and exception type.", (L_APP_NAME, L_EXCEPTION_TYPE),
)
CUSTOM_ERRORS = MetricSpec(
    "windows_custom_errors_total", "counter",
    "Custom error pages served, by HTTP status code and application.", (L_ERROR_CODE, L_APP_NAME),
)
IIS_FAMILIES: tuple[MetricSpec, ...] = (
    IIS_REQUESTS, IIS_CURRENT_CONNECTIONS, IIS_SERVER_ERRORS, IIS_CLIENT_ERRORS, IIS_EXECUTION_TIME,
    IIS_APP_POOL_STATE, NETFRAMEWORK_EXCEPTIONS, CUSTOM_ERRORS,
)

# Share of each site's requests per HTTP method (a banking front end: mostly reads).
IIS_METHOD_MIX: dict[str, float] = {"GET": 0.72, "POST": 0.22, "PUT": 0.04, "DELETE": 0.02}
# .NET exception types thrown in normal operation, with their share of the exceptions.
NETFRAMEWORK_EXCEPTION_MIX: dict[str, float] = {
    "System.NullReferenceException": 0.30,
    "System.Data.SqlClient.SqlException": 0.25,
    "System.TimeoutException": 0.20,
    "System.InvalidOperationException": 0.15,
    "System.ArgumentException": 0.10,
}
# An exception storm is a database in trouble: one type floods the counters.
NETFRAMEWORK_STORM_EXCEPTION = "System.Data.SqlClient.SqlException"
# Status codes the custom error pages exist for: not found, application error, pool down.
IIS_CUSTOM_ERROR_NOT_FOUND = "404"
IIS_CUSTOM_ERROR_APPLICATION = "500"
IIS_CUSTOM_ERROR_UNAVAILABLE = "503"
IIS_CUSTOM_ERROR_CODES: tuple[str, ...] = (
    IIS_CUSTOM_ERROR_NOT_FOUND, IIS_CUSTOM_ERROR_APPLICATION, IIS_CUSTOM_ERROR_UNAVAILABLE,
)

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
ATTR_CLIENT_ADDRESS = "client.address"      # OTel semantic convention: the original client
EVENT_FAULT_INJECTED = "fault.injected"
ATTR_FAULT_ID = "fault.id"
ATTR_FAULT_KIND = "fault.kind"
ATTR_FAULT_TARGET = "fault.target"

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
CUSTOMER_ID_PATTERN = r"cus_[a-z0-9]{16}"
TRANSFER_ID_PATTERN = r"trf_[a-z0-9]{16}"
PAYMENT_ID_PATTERN = r"pay_[a-z0-9]{16}"
JWT_PATTERN = r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
CARD_NUMBER_PATTERN = r"(?<!\d)\d{13,19}(?!\d)"
SECRET_QUERY_PARAMETER_PATTERN = r"\b((?i:password|passwd|token|access_token|secret))=[^&\s]+"

SYSTEM_ACCOUNT_CASH = "cash"              # where deposits come from (may go negative)
SYSTEM_ACCOUNT_SETTLEMENT = "settlement"  # where card payments go before the merchant is paid


def system_account_id(purpose: str, currency: str) -> str:
    """The bank's own account for ``purpose`` in ``currency``, e.g. ``sys_settlement_eur``."""
    return f"sys_{purpose}_{currency.lower()}"


# --- alerting (DESIGN.md, "Alerting conventions") -------------------------------------------

# Runbooks are served by the alert-receiver, one page per alert: runbooks/<AlertName>.md.
RUNBOOK_BASE_URL = "http://localhost:8095/runbooks"
# Grafana's short dashboard link: /d/<uid> (Grafana adds the slug itself).
DASHBOARD_BASE_URL = "http://localhost:3000/d"
# Jaeger's UI (compose); natively the trace sink answers its query API (/api/traces) instead.
JAEGER_UI_URL = "http://localhost:16686"

# Routing labels of every alert (L_SERVICE, above, is the third) and its annotations.
L_SEVERITY = "severity"
L_ALERTNAME = "alertname"   # set by Prometheus on every alert; Alertmanager routes and groups on it
L_TEAM = "team"
A_SUMMARY = "summary"
A_DESCRIPTION = "description"
A_RUNBOOK_URL = "runbook_url"
A_DASHBOARD_URL = "dashboard_url"


class Severity(str, Enum):
    CRITICAL = "critical"   # pages someone now
    WARNING = "warning"     # opens a ticket
    INFO = "info"           # recorded, not routed


TEAM_WINDOWS_PLATFORM = "windows-platform"   # owns the IIS estate
SERVICE_IIS = "iis"                          # the ``service`` label of IIS alerts (the tier)

# Grafana dashboard UIDs alerts link to (stable: links in old notifications must keep working).
DASHBOARD_IIS = "obslab-iis"
DASHBOARD_OVERVIEW = "obslab-overview"     # RED per service, service graph
DASHBOARD_SLOS = "obslab-slos"             # transactions, SLOs, error budgets, burn rates
DASHBOARD_DDOS = "obslab-ddos"
DASHBOARD_BASELINES = "obslab-baselines"
DASHBOARD_ALERTS = "obslab-alerts"         # firing alerts, notifications, faults, drills

# SLO rules (obslab/rules/slo.py); {window} is each burn-rate window, e.g. 1h.
L_SLO = "slo"
L_LONG_WINDOW = "long_window"
L_SHORT_WINDOW = "short_window"
RULE_SLO_ERROR_RATIO = "slo:sli_error:ratio_rate{window}"
RULE_SLO_BURN_RATE = "slo:burn_rate:ratio_rate{window}"
RULE_SLO_OBJECTIVE = "slo:objective:ratio"
RULE_SLO_ERROR_BUDGET = "slo:error_budget:ratio"
RULE_SLO_BUDGET_REMAINING = "slo:error_budget_remaining:ratio"

# The OpenTelemetry Collector's own metrics (compose), read by the telemetry-pipeline alert.
# What the Collector's connectors write (compose only). spanmetrics' namespace is dotted in the
# Collector's configuration; Prometheus sees underscores, and so does Jaeger's Monitor tab.
SPANMETRICS_NAMESPACE = "traces.span.metrics"
SPANMETRICS_PREFIX = "traces_span_metrics"
SPANMETRICS_CALLS = f"{SPANMETRICS_PREFIX}_calls_total"
SPANMETRICS_DURATION = f"{SPANMETRICS_PREFIX}_duration_milliseconds"          # histogram, ms
SERVICEGRAPH_REQUESTS = "traces_service_graph_request_total"
SERVICEGRAPH_FAILED = "traces_service_graph_request_failed_total"
SERVICEGRAPH_SERVER_DURATION = "traces_service_graph_request_server_seconds"  # histogram, s
EXEMPLAR_TRACE_ID_LABEL = "trace_id"   # the exemplar label prometheus-client and the Collector write

OTELCOL_EXPORTER_SENT_SPANS = "otelcol_exporter_sent_spans_total"
OTELCOL_EXPORTER_SEND_FAILED_SPANS = "otelcol_exporter_send_failed_spans_total"
OTELCOL_METRICS = (OTELCOL_EXPORTER_SENT_SPANS, OTELCOL_EXPORTER_SEND_FAILED_SPANS)

# Alerts code refers to (drills, the live tests, Alertmanager's routes).
ALERT_WATCHDOG = "Watchdog"
ALERT_PAYMENT_AVAILABILITY = "PaymentAvailabilityBudgetBurn"
ALERT_SERVICE_ERROR_RATE = "ServiceErrorRateHigh"
ALERT_CIRCUIT_BREAKER_OPEN = "CircuitBreakerOpen"
ALERT_GATEWAY_FLOOD = "GatewayFloodSuspected"
ALERT_DDOS_SUSPECTED = "DDoSAttackSuspected"   # the ML detector's (ddos-detector)
ALERT_ML_DETECTOR_STALE = "MLDetectorStale"
ALERT_METRIC_OUTSIDE_BASELINE = "MetricOutsideBaseline"
ALERT_BANKING_SERVICE_DOWN = "BankingServiceDown"   # never inhibited: a flood does not stop a process

# Alertmanager receivers (alertmanager/): every route ends at the alert-receiver in the lab.
RECEIVER_PAGER = "pager"
RECEIVER_DEADMAN = "deadman"
RECEIVER_BLACKHOLE = "blackhole"               # info: recorded in Alertmanager, never sent


def chat_receiver(team: str) -> str:
    """The team chat receiver that gets ``team``'s warnings, e.g. ``chat-core-banking``."""
    return f"chat-{team}"

# Recording rules, named level:metric:operations. An empty level is the whole IIS estate.
RULE_IIS_SITE_REQUESTS_RATE = "site:windows_iis_requests:rate5m"
RULE_IIS_SITE_REQUESTS_RATE_AVG30M = "site:windows_iis_requests:rate5m_avg30m"
RULE_IIS_SITE_SURGE_RATIO = "site:windows_iis_volume:surge_ratio"
RULE_IIS_SITE_SERVER_ERRORS_RATE = "site:windows_iis_server_errors:rate5m"
RULE_IIS_SITE_CLIENT_ERRORS_RATE = "site:windows_iis_client_errors:rate5m"
RULE_IIS_SITE_SUCCESS_PERCENT = "site:windows_iis_success:percent_rate5m"
RULE_IIS_SITE_P95 = "site:windows_iis_request_execution_time:p95_rate5m"
RULE_IIS_APP_EXCEPTIONS_RATE = "app:windows_netframework_exceptions:rate5m"
RULE_IIS_APP_EXCEPTIONS_PERCENT = "app:windows_netframework_exceptions:percent_rate5m"
RULE_IIS_REQUESTS_RATE = ":windows_iis_requests:rate5m"
RULE_IIS_SUCCESS_PERCENT = ":windows_iis_success:percent_rate5m"
RULE_IIS_EXCEPTIONS_PERCENT = ":windows_netframework_exceptions:percent_rate5m"
RULE_IIS_P95 = ":windows_iis_request_execution_time:p95_rate5m"

# Alert names; each has runbooks/<name>.md.
ALERT_IIS_VOLUME_SURGE = "IISVolumeSurge"
ALERT_IIS_SUCCESS_RATE_LOW = "IISSuccessRateLow"
ALERT_IIS_TECHNICAL_EXCEPTIONS_HIGH = "IISTechnicalExceptionsHigh"
ALERT_IIS_RESPONSE_TIME_P95_HIGH = "IISResponseTimeP95High"
ALERT_IIS_APP_POOL_DOWN = "IISAppPoolDown"


def runbook_url(alert: str, base: str = RUNBOOK_BASE_URL) -> str:
    """Where the runbook of ``alert`` is served, e.g. ``.../runbooks/IISAppPoolDown.md`` (``base``:
    the alert-receiver's runbook folder; a lab on other ports passes its own)."""
    return f"{base}/{alert}.md"


def dashboard_url(uid: str) -> str:
    """Grafana link to the dashboard with ``uid``."""
    return f"{DASHBOARD_BASE_URL}/{uid}"


# --- ML detectors (ml/): DDoS detection and auto-baselining ----------------------------------

L_DETECTOR = "detector"
L_MODEL = "model"
L_FEATURE = "feature"
L_PREDICTION = "prediction"
L_ALGORITHM = "algorithm"
L_SERIES = "series"
L_BOUND = "bound"

# The seed's DDoS schema (names must not drift), then what explains it.
DDOS_DETECTION_SCORE = MetricSpec(
    "ddos_detection_score", "gauge",
    "Ensemble anomaly score of the gateway's traffic, 0 (normal) to 1 (attack); absent while stale.")
DDOS_CONFIDENCE = MetricSpec(
    "ddos_confidence", "gauge",
    "How much to trust the verdict, 0-1: distance from the decision threshold times model agreement.")
DDOS_BINARY_PREDICTION = MetricSpec(
    "ddos_binary_prediction", "gauge", "1 while the ensemble says the gateway is under attack, else 0.")
DDOS_MODEL_PREDICTIONS = MetricSpec(
    "ddos_model_predictions_total", "counter", "Verdicts given, by prediction (attack, normal).", (L_PREDICTION,))
DDOS_MODEL_SCORE = MetricSpec(
    "ddos_model_score", "gauge", "Calibrated anomaly score of each model of the ensemble, 0-1.", (L_MODEL,))
DDOS_FEATURE_VALUE = MetricSpec(
    "ddos_feature_value", "gauge", "Current value of each input feature of the DDoS model.", (L_FEATURE,))
DDOS_FEATURE_CONTRIBUTION = MetricSpec(
    "ddos_feature_contribution", "gauge",
    "Drop of the detection score if this feature alone were normal: what drives the verdict.", (L_FEATURE,))
DDOS_THRESHOLD = MetricSpec(
    "ddos_decision_threshold", "gauge", "Score at or above which the verdict is attack.")
DDOS_MODEL_TRAINED = MetricSpec(
    "ddos_model_trained_timestamp_seconds", "gauge", "When the model in use was trained.")
DDOS_RETRAINS = MetricSpec(
    "ddos_model_retrains_total", "counter",
    "Retraining attempts by outcome (accepted, refused: worse than the current model, failed).", (L_OUTCOME,))

ML_INPUT_STALE = MetricSpec(
    "ml_input_stale", "gauge",
    "1 while a detector cannot read fresh inputs from Prometheus (its verdict gauges are withdrawn).",
    (L_DETECTOR,))
ML_LAST_EVALUATION = MetricSpec(
    "ml_last_evaluation_timestamp_seconds", "gauge", "When a detector last evaluated fresh inputs.", (L_DETECTOR,))
ML_EVALUATION_DURATION = MetricSpec(
    "ml_evaluation_duration_seconds", "histogram", "Time of one evaluation (queries and model).", (L_DETECTOR,),
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))

BASELINE_OBSERVED = MetricSpec(
    "baseline_observed_value", "gauge", "Latest value of a baselined series.", (L_SERIES, L_SERVICE))
BASELINE_EXPECTED = MetricSpec(
    "baseline_expected_value", "gauge", "Value the algorithm expects now.", (L_SERIES, L_SERVICE, L_ALGORITHM))
BASELINE_UPPER = MetricSpec(
    "baseline_upper_bound", "gauge", "Upper edge of the algorithm's normal band.", (L_SERIES, L_SERVICE, L_ALGORITHM))
BASELINE_LOWER = MetricSpec(
    "baseline_lower_bound", "gauge", "Lower edge of the algorithm's normal band.", (L_SERIES, L_SERVICE, L_ALGORITHM))
BASELINE_SCORE = MetricSpec(
    "baseline_anomaly_score", "gauge",
    "0 on the expected value, 0.5 on the band's edge, towards 1 far outside.", (L_SERIES, L_SERVICE, L_ALGORITHM))
BASELINE_THRESHOLD = MetricSpec(
    "baseline_recommended_threshold", "gauge",
    "The ensemble's recommended alert threshold per bound (upper, lower).", (L_SERIES, L_SERVICE, L_BOUND))
BASELINE_FIT_DURATION = MetricSpec(
    "baseline_fit_duration_seconds", "gauge", "Wall time of the last refit of every series and algorithm.")
BASELINE_LAST_FIT = MetricSpec(
    "baseline_last_fit_timestamp_seconds", "gauge", "When the baselines were last refitted.")
BASELINE_HISTORY_POINTS = MetricSpec(
    "baseline_history_points", "gauge", "Points of history the last refit used, per series.", (L_SERIES, L_SERVICE))
