"""Alerting names: label and annotation keys, severities, teams, receivers, links."""

from __future__ import annotations

import re
from enum import Enum

# --- alerting (routing: alertmanager/README.md) ------------------------------------------------

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


# Grafana dashboard UIDs alerts link to (stable: links in old notifications must keep working).
DASHBOARD_IIS = "obslab-iis"
DASHBOARD_OVERVIEW = "obslab-overview"     # RED per service, service graph
DASHBOARD_SLOS = "obslab-slos"             # transactions, SLOs, error budgets, burn rates
DASHBOARD_DDOS = "obslab-ddos"
DASHBOARD_BASELINES = "obslab-baselines"
DASHBOARD_ALERTS = "obslab-alerts"         # firing alerts, notifications, faults, drills
DASHBOARD_BUSINESS = "obslab-business"     # performance score, SLO/SLA compliance, KPIs, capacity, cost

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
EXEMPLAR_TRACE_ID_LABEL = "trace_id"   # the exemplar label prometheus-client and the Collector write

OTELCOL_EXPORTER_SENT_SPANS = "otelcol_exporter_sent_spans_total"
OTELCOL_EXPORTER_SEND_FAILED_SPANS = "otelcol_exporter_send_failed_spans_total"
OTELCOL_METRICS = (OTELCOL_EXPORTER_SENT_SPANS, OTELCOL_EXPORTER_SEND_FAILED_SPANS)

# Alertmanager receivers (alertmanager/): every route ends at the alert-receiver in the lab.
RECEIVER_PAGER = "pager"
RECEIVER_DEADMAN = "deadman"
RECEIVER_BLACKHOLE = "blackhole"               # info: recorded in Alertmanager, never sent


def chat_receiver(team: str) -> str:
    """The team chat receiver that gets ``team``'s warnings, e.g. ``chat-core-banking``."""
    return f"chat-{team}"

# A drill's name (and its file name, drills/<name>.yml); the alert-receiver checks the drill
# reports it stores by it.
DRILL_NAME = re.compile(r"[a-z][a-z0-9-]{1,62}")
