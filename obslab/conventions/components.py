"""The lab's components by name, and the ports the lab chooses for them."""

from __future__ import annotations

# --- services and ports ----------------------------------------------------------------------

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
