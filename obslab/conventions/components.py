"""The lab's components by name (their ports and addresses: obslab/topology.py)."""

from __future__ import annotations

# --- components ----------------------------------------------------------------------

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
# Reads Prometheus like the detectors: the performance score, SLO/SLA compliance, business KPIs, cost.
PERFORMANCE_AGGREGATOR = "performance-aggregator"
ML_SERVICES: tuple[str, ...] = (DDOS_DETECTOR, BASELINER, PERFORMANCE_AGGREGATOR)

BANKING_SERVICES: tuple[str, ...] = (
    GATEWAY, AUTH, ACCOUNTS, TRANSACTIONS, PAYMENTS, FRAUD, NOTIFICATIONS,
)


# The simulated external card processor is not a process; it shows up in traces as a peer.
CARD_PROCESSOR = "card-processor"
