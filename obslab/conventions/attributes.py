"""Span attribute keys (banking context, never secrets) and identifier formats."""

from __future__ import annotations

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
ATTR_NOTIFICATION_KIND = "banking.notification.kind"
ATTR_PEER_SERVICE = "peer.service"
ATTR_CLIENT_ADDRESS = "client.address"      # OTel semantic convention: the original client
EVENT_FAULT_INJECTED = "fault.injected"
ATTR_FAULT_ID = "fault.id"
ATTR_FAULT_KIND = "fault.kind"
ATTR_FAULT_TARGET = "fault.target"


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
