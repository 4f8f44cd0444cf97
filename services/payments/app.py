"""payments service: bill and card payments.

A payment: claim the Idempotency-Key -> fraud scores it -> accounts debits the customer into the
settlement account -> the external card processor authorizes it. A decline is refunded. Each
step's result is stored before the next, so a retry after a technical failure resumes where the
first attempt stopped instead of charging twice.

Besides the seed ``transaction_*`` metrics: ``transaction_value{type="payment",currency}`` (the
amount of each completed payment, major units) and ``payments_by_category_total{merchant_category,
status}`` (each payment request that reached a final status, by the merchant's category:
:mod:`.categories`).

Routes (internal; for the customer the gateway's signed assertion names):
  POST /payments {account, merchant, amount, currency}   Idempotency-Key required
  GET  /payments/<id>
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from flask import Flask
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator
from sqlalchemy import BigInteger, Column, Float, Index, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from obslab import conventions as c
from obslab.services.common import money
from obslab import topology
from obslab.conventions import MerchantCategory, TransactionStatus, TransactionType
from obslab.faults.board import process_board
from obslab.platform.app import (
    ServiceContext,
    create_service_app,
    parse_body,
    require_customer,
    require_idempotency_key,
)
from obslab.platform.clock import iso_utc, now_ms
from obslab.platform.errors import ApiError
from obslab.platform.http import error_from_response
from obslab.platform.ids import AccountIdField, new_id, require_customer_account
from obslab.services.common.idempotency import IdempotencyStore, idempotency_table
from obslab.services.common.money import (
    MINOR_UNITS_PER_MAJOR,
    Amount,
    Currency,
    amount_bucket,
    to_decimal_string,
    to_minor,
)
from obslab.services.common.movement import MOVEMENT_METRICS, MovementRunner, Outcome, fingerprint_payload, rejected
from obslab.services.common.notify import notify_customer
from obslab.services.payments.categories import merchant_category
from obslab.services.payments.processor import CardProcessor
from obslab.telemetry import MetricSet, mask_account

log = logging.getLogger(__name__)

metadata = MetaData()
idempotency_keys = idempotency_table(metadata)
payments = Table(
    "payments", metadata,
    Column("id", String(32), primary_key=True),
    Column("customer_id", String(40), nullable=False),
    Column("account", String(40), nullable=False),
    Column("merchant", String(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error_code", String(40)),
    Column("risk_score", Float),
    Column("processor_code", String(32)),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_payments_account", "account", "created_ms"),
)

# Internal states between "pending" and a final TransactionStatus.
PENDING = "pending"
AUTHORIZED = "authorized"
REFUNDING = "refunding"

# As the public API document says (openapi.yaml, Merchant): no stripping, so " Shop" is refused
# like any other name that does not start with a letter or digit.
Merchant = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._&'-]*$")]


class PaymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: AccountIdField
    merchant: Merchant
    amount: Amount
    currency: Currency

    @model_validator(mode="after")
    def _an_account_that_can_exist(self) -> "PaymentRequest":
        # After every 400: a well-formed request naming an account that cannot exist is about an
        # unknown account (404, as the ledger says for one that does not exist), not malformed.
        # An ApiError, not a ValueError, so that pydantic lets it through as it is.
        require_customer_account(self.account, "source")
        return self


class CategorisedRunner(MovementRunner):
    """The payment's movement runner, which also counts ``payments_by_category_total`` where and
    when ``transaction_requests_total`` is counted: once per request that reaches a final status
    (completed, rejected, declined, or failed on a technical error). One per request."""

    def __init__(self, store: IdempotencyStore, metrics: MetricSet, category: str) -> None:
        super().__init__(TransactionType.PAYMENT, store, metrics)
        self.category = category

    def _record(self, status: TransactionStatus, error_code: str | None, elapsed: float) -> None:
        super()._record(status, error_code, elapsed)
        self.metrics.count(c.PAYMENTS_BY_CATEGORY, merchant_category=self.category, status=status.value)


def public_payment(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": row["status"],
        "account": row["account"],
        "merchant": row["merchant"],
        "amount": to_decimal_string(row["amount_minor"]),
        "currency": row["currency"],
        "risk_score": row["risk_score"],
        "error": row["error_code"],
        "created_at": iso_utc(row["created_ms"]),
    }


def create_app(db_url: str | None = None, peer_urls: dict[str, str] | None = None,
               processor: CardProcessor | None = None) -> Flask:
    def routes(app: Flask, ctx: ServiceContext) -> None:
        _routes(app, ctx, processor or CardProcessor(board=process_board()))

    return create_service_app(
        c.PAYMENTS, routes, metadata=metadata, db_url=db_url,
        peers=topology.service_peers(c.PAYMENTS), peer_urls=peer_urls,
        metric_specs=[*MOVEMENT_METRICS, c.PROCESSOR_DURATION, c.NOTIFICATIONS_DROPPED, c.TRANSACTION_VALUE,
                      c.PAYMENTS_BY_CATEGORY],
    )


def _routes(app: Flask, ctx: ServiceContext, processor: CardProcessor) -> None:
    assert ctx.db is not None
    db = ctx.db
    store = IdempotencyStore(db, idempotency_keys)
    fraud, accounts, notifications = ctx.peer(c.FRAUD), ctx.peer(c.ACCOUNTS), ctx.peer(c.NOTIFICATIONS)
    # Every (category, status) series at 0 from the start: a rate over a series born at its first
    # event misses that event. Few: categories x final statuses.
    by_category = ctx.metrics.counter(c.PAYMENTS_BY_CATEGORY)
    for category in MerchantCategory:
        for status in TransactionStatus:
            by_category.labels(merchant_category=category.value, status=status.value)

    def load(payment_id: str) -> Any:
        with db.connect() as conn:
            return conn.execute(select(payments).where(payments.c.id == payment_id)).mappings().one()

    def save(payment_id: str, **values: Any) -> Any:
        db.run(lambda conn: conn.execute(update(payments).where(payments.c.id == payment_id).values(
            updated_ms=now_ms(), **values,
        )))
        return load(payment_id)

    def start(payment_id: str, customer: str, body: PaymentRequest, amount_minor: int) -> Any:
        now = now_ms()
        try:
            db.run(lambda conn: conn.execute(insert(payments).values(
                id=payment_id, customer_id=customer, account=body.account, merchant=body.merchant,
                amount_minor=amount_minor, currency=body.currency, status=PENDING,
                created_ms=now, updated_ms=now,
            )))
        except IntegrityError:
            pass  # resumed after a technical failure
        return load(payment_id)

    def debit_and_authorize(row: Any, customer: str) -> Any | Outcome:
        payment_id, amount_minor, currency = row["id"], row["amount_minor"], row["currency"]
        risk = fraud.call("POST", "/assessments", json={
            "customer_id": customer, "kind": "payment", "amount_minor": amount_minor,
            "currency": currency, "counterparty": row["merchant"], "reference": payment_id,
        })
        span = trace.get_current_span()
        span.set_attribute(c.ATTR_RISK_SCORE, risk["score"])
        span.set_attribute(c.ATTR_RISK_DECISION, risk["decision"])
        if risk["decision"] == "deny":
            save(payment_id, status=TransactionStatus.REJECTED.value, error_code="risk_rejected",
                 risk_score=risk["score"])
            return rejected(422, "risk_rejected", "the payment was refused by risk checks",
                            payment_id=payment_id, reasons=risk["reasons"])
        response = accounts.request("POST", "/movements", json={
            "id": payment_id, "kind": "payment", "debit_account": row["account"],
            "credit_account": money.system_account_id(money.SYSTEM_ACCOUNT_SETTLEMENT, currency),
            "amount_minor": amount_minor, "currency": currency,
        }, for_customer=True)
        if response.status_code >= 400:
            error = error_from_response(c.ACCOUNTS, response)
            save(payment_id, status=TransactionStatus.REJECTED.value, error_code=error.code,
                 risk_score=risk["score"])
            return rejected(error.status, error.code, error.message, payment_id=payment_id)
        auth = processor.authorize(amount_minor, currency, row["merchant"])
        ctx.metrics.observe(c.PROCESSOR_DURATION, auth.latency_seconds, outcome=auth.code)
        return save(payment_id, status=AUTHORIZED if auth.approved else REFUNDING,
                    processor_code=auth.code, risk_score=risk["score"])

    def execute(payment_id: str, customer: str, body: PaymentRequest) -> Outcome:
        amount_minor = to_minor(body.amount)
        row = start(payment_id, customer, body, amount_minor)
        if row["status"] == PENDING:
            row = debit_and_authorize(row, customer)
            if isinstance(row, Outcome):
                return row
        amount_text = f"{to_decimal_string(amount_minor)} {body.currency}"
        if row["status"] == REFUNDING:
            accounts.call("POST", "/movements", json={
                "id": f"{payment_id}-refund", "kind": "refund",
                "debit_account": money.system_account_id(money.SYSTEM_ACCOUNT_SETTLEMENT, body.currency),
                "credit_account": body.account, "amount_minor": amount_minor, "currency": body.currency,
            })
            save(payment_id, status=TransactionStatus.DECLINED.value, error_code="payment_declined")
            notify_customer(notifications, ctx.metrics, customer, "payment_declined", payment_id,
                   f"Your payment of {amount_text} to {body.merchant} was declined and refunded.")
            return Outcome(TransactionStatus.DECLINED, 422, {
                "error": "payment_declined", "message": "the card processor declined the payment",
                "status": TransactionStatus.DECLINED.value, "payment_id": payment_id,
            }, "payment_declined")
        row = save(payment_id, status=TransactionStatus.COMPLETED.value)
        notify_customer(notifications, ctx.metrics, customer, "payment_completed", payment_id,
                        f"You paid {amount_text} to {body.merchant}.")
        # Major units only here, for the metric; the money itself stays integer minor units.
        ctx.metrics.observe(c.TRANSACTION_VALUE, amount_minor / MINOR_UNITS_PER_MAJOR,
                            type=TransactionType.PAYMENT.value, currency=body.currency)
        return Outcome(TransactionStatus.COMPLETED, 201, public_payment(row))

    @app.post("/payments")
    def create_payment():
        customer = require_customer()
        key = require_idempotency_key()
        body = parse_body(PaymentRequest)
        span = trace.get_current_span()
        span.set_attribute(c.ATTR_AMOUNT_BUCKET, amount_bucket(to_minor(body.amount)))
        span.set_attribute(c.ATTR_CURRENCY, body.currency)
        span.set_attribute(c.ATTR_ACCOUNT_MASKED, mask_account(body.account))
        runner = CategorisedRunner(store, ctx.metrics, merchant_category(body.merchant))
        return runner.run(
            customer, key, fingerprint_payload(body), lambda: new_id("pay_"),
            lambda payment_id: execute(payment_id, customer, body),
        )

    @app.get("/payments/<payment_id>")
    def get_payment(payment_id: str):
        customer = require_customer()
        with db.connect() as conn:
            row = conn.execute(select(payments).where(payments.c.id == payment_id)).mappings().first()
        if row is None or row["customer_id"] != customer:
            raise ApiError(404, "payment_not_found", "payment not found")
        return public_payment(row)
