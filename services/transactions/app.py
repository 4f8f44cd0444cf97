"""transactions service: transfers between accounts (atomic, idempotent) and their history.

A transfer: claim the Idempotency-Key (with the pending transfer row) -> fraud scores it ->
accounts moves the money in one ledger transaction (idempotent on the transfer id) -> the final
state and the key's answer, stored together -> notifications tells the customer.
Besides the seed ``transaction_*`` metrics, ``transaction_value{type="transfer",currency}``
observes the amount of each completed transfer in major units.

Routes (internal; for the customer the gateway's signed assertion names):
  POST /transfers {from_account, to_account, amount, currency}   Idempotency-Key required
  GET  /transfers?account=ID[&limit=N]                           newest first: the account's own
                                                                 transfers, and completed incoming
                                                                 ones with the sender masked
  GET  /transfers/<id>
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from flask import Flask
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, model_validator
from sqlalchemy import BigInteger, Column, Float, Index, MetaData, String, Table, bindparam, insert, select, update

from obslab import conventions as c
from obslab import topology
from obslab.conventions import TransactionStatus, TransactionType
from obslab.platform.app import (
    ServiceContext,
    create_service_app,
    parse_body,
    query_int,
    require_customer,
    require_idempotency_key,
    require_query,
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
from obslab.telemetry import mask_account

log = logging.getLogger(__name__)

metadata = MetaData()
idempotency_keys = idempotency_table(metadata)
transfers = Table(
    "transfers", metadata,
    Column("id", String(32), primary_key=True),
    Column("customer_id", String(40), nullable=False),
    Column("from_account", String(40), nullable=False),
    Column("to_account", String(40), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error_code", String(40)),
    Column("risk_score", Float),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_transfers_from", "from_account", "created_ms"),
    Index("ix_transfers_to", "to_account", "created_ms"),
)

PENDING = "pending"

# Built once (as the ledger's statements are): building one anew costs more than running it.
_TRANSFER_BY_ID = select(transfers).where(transfers.c.id == bindparam("transfer_id"))
_INSERT_TRANSFER = insert(transfers)
_FINISH_TRANSFER = update(transfers).where(transfers.c.id == bindparam("transfer_id")).values(
    status=bindparam("new_status"), error_code=bindparam("new_error_code"),
    risk_score=bindparam("new_risk_score"), updated_ms=bindparam("new_updated_ms"))


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_account: AccountIdField
    to_account: AccountIdField
    amount: Amount
    currency: Currency

    @model_validator(mode="after")
    def _distinct_accounts(self) -> "TransferRequest":
        if self.from_account == self.to_account:
            raise ValueError("from_account and to_account must be different accounts")
        return self

    @model_validator(mode="after")
    def _accounts_that_can_exist(self) -> "TransferRequest":
        # After every 400: a well-formed request naming an account that cannot exist is about an
        # unknown account (404, as the ledger says for one that does not exist), not malformed.
        # An ApiError, not a ValueError, so that pydantic lets it through as it is.
        require_customer_account(self.from_account, "source")
        require_customer_account(self.to_account, "destination")
        return self


def incoming_transfer(row: Any) -> dict[str, Any]:
    """A transfer as its recipient sees it: what arrived, from whom (masked); nothing of the
    sender's risk score or refusals."""
    return {**public_transfer(row), "from_account": mask_account(row["from_account"]), "risk_score": None,
            "error": None}


def public_transfer(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": row["status"],
        "from_account": row["from_account"],
        "to_account": row["to_account"],
        "amount": to_decimal_string(row["amount_minor"]),
        "currency": row["currency"],
        "risk_score": row["risk_score"],
        "error": row["error_code"],
        "created_at": iso_utc(row["created_ms"]),
    }


def create_app(db_url: str | None = None, peer_urls: dict[str, str] | None = None) -> Flask:
    return create_service_app(
        c.TRANSACTIONS, _routes, metadata=metadata, db_url=db_url,
        peers=topology.service_peers(c.TRANSACTIONS), peer_urls=peer_urls,
        metric_specs=[*MOVEMENT_METRICS, c.NOTIFICATIONS_DROPPED, c.TRANSACTION_VALUE],
    )


def _routes(app: Flask, ctx: ServiceContext) -> None:
    assert ctx.db is not None
    db = ctx.db
    runner = MovementRunner(TransactionType.TRANSFER, IdempotencyStore(db, idempotency_keys), ctx.metrics)
    fraud, accounts, notifications = ctx.peer(c.FRAUD), ctx.peer(c.ACCOUNTS), ctx.peer(c.NOTIFICATIONS)

    store = runner.store

    def conclude(transfer_id: str, customer: str, key: str, status: str, error_code: str | None,
                 risk_score: float, answer: Callable[[Any], Outcome]) -> Outcome:
        """The transfer's final state, and ``answer(row)`` stored for its Idempotency-Key: one unit
        of work (one connection, one commit, one span) on the transfer's hot path, not three."""
        def unit(conn: Any) -> Outcome:
            conn.execute(_FINISH_TRANSFER, {
                "transfer_id": transfer_id, "new_status": status, "new_error_code": error_code,
                "new_risk_score": risk_score, "new_updated_ms": now_ms(),
            })
            outcome = answer(conn.execute(_TRANSFER_BY_ID, {"transfer_id": transfer_id}).mappings().one())
            store.complete_in(conn, customer, key, outcome.http_status, outcome.body)
            return replace(outcome, stored=True)
        return db.run(unit)

    def pending(customer: str, body: TransferRequest) -> Callable[[Any, str], None]:
        """The transfer's first row, written with its Idempotency-Key's claim."""
        def begin(conn: Any, transfer_id: str) -> None:
            now = now_ms()
            conn.execute(_INSERT_TRANSFER, {
                "id": transfer_id, "customer_id": customer, "from_account": body.from_account,
                "to_account": body.to_account, "amount_minor": to_minor(body.amount), "currency": body.currency,
                "status": PENDING, "created_ms": now, "updated_ms": now,
            })
        return begin

    def execute(transfer_id: str, customer: str, key: str, body: TransferRequest) -> Outcome:
        amount_minor = to_minor(body.amount)
        risk = fraud.call("POST", "/assessments", json={
            "customer_id": customer, "kind": "transfer", "amount_minor": amount_minor,
            "currency": body.currency, "counterparty": body.to_account, "reference": transfer_id,
        })
        span = trace.get_current_span()
        span.set_attribute(c.ATTR_RISK_SCORE, risk["score"])
        span.set_attribute(c.ATTR_RISK_DECISION, risk["decision"])
        if risk["decision"] == "deny":
            return conclude(transfer_id, customer, key, TransactionStatus.REJECTED.value, "risk_rejected",
                            risk["score"], lambda _row: rejected(
                                422, "risk_rejected", "the transfer was refused by risk checks",
                                transfer_id=transfer_id, reasons=risk["reasons"]))
        response = accounts.request("POST", "/movements", json={
            "id": transfer_id, "kind": "transfer", "debit_account": body.from_account,
            "credit_account": body.to_account, "amount_minor": amount_minor, "currency": body.currency,
        }, for_customer=True)
        if response.status_code >= 400:  # a business refusal (funds, ownership, currency): final
            error = error_from_response(c.ACCOUNTS, response)
            return conclude(transfer_id, customer, key, TransactionStatus.REJECTED.value, error.code,
                            risk["score"], lambda _row: rejected(error.status, error.code, error.message,
                                                                 transfer_id=transfer_id))
        # The answer is stored before the customer is told: telling is best effort, and a retry
        # in between replays the transfer's answer at once instead of waiting for it.
        outcome = conclude(transfer_id, customer, key, TransactionStatus.COMPLETED.value, None, risk["score"],
                           lambda row: Outcome(TransactionStatus.COMPLETED, 201, public_transfer(row)))
        notify_customer(notifications, ctx.metrics, customer, "transfer_sent", transfer_id,
                        f"You sent {to_decimal_string(amount_minor)} {body.currency} to {mask_account(body.to_account)}.")
        # Major units only here, for the metric; the money itself stays integer minor units.
        ctx.metrics.observe(c.TRANSACTION_VALUE, amount_minor / MINOR_UNITS_PER_MAJOR,
                            type=TransactionType.TRANSFER.value, currency=body.currency)
        return outcome

    @app.post("/transfers")
    def create_transfer():
        customer = require_customer()
        key = require_idempotency_key()
        body = parse_body(TransferRequest)
        span = trace.get_current_span()
        span.set_attribute(c.ATTR_AMOUNT_BUCKET, amount_bucket(to_minor(body.amount)))
        span.set_attribute(c.ATTR_CURRENCY, body.currency)
        span.set_attribute(c.ATTR_ACCOUNT_MASKED, mask_account(body.from_account))
        span.set_attribute(c.ATTR_COUNTERPARTY_MASKED, mask_account(body.to_account))
        return runner.run(
            customer, key, fingerprint_payload(body), lambda: new_id("trf_"),
            lambda transfer_id: execute(transfer_id, customer, key, body), begin=pending(customer, body),
        )

    @app.get("/transfers")
    def list_transfers():
        customer = require_customer()
        account = require_query("account")
        limit = query_int("limit", 50, 1, 200)
        require_customer_account(account)
        # Only the owner may read an account's history; accounts answers 404 otherwise.
        accounts.call("GET", f"/accounts/{quote(account, safe='')}", for_customer=True)
        t = transfers
        # Outgoing: what this customer asked for (a stranger's refused attempt to debit the account
        # is the stranger's record, not the owner's); incoming: what arrived.
        outgoing = (t.c.from_account == account) & (t.c.customer_id == customer)
        incoming = (t.c.to_account == account) & (t.c.status == TransactionStatus.COMPLETED.value)
        with db.connect() as conn:
            rows = conn.execute(
                select(t).where(outgoing | incoming).order_by(t.c.created_ms.desc(), t.c.id).limit(limit)
            ).mappings().all()
        return [public_transfer(row) if row["customer_id"] == customer and row["from_account"] == account
                else incoming_transfer(row) for row in rows]

    @app.get("/transfers/<transfer_id>")
    def get_transfer(transfer_id: str):
        customer = require_customer()
        with db.connect() as conn:
            row = conn.execute(_TRANSFER_BY_ID, {"transfer_id": transfer_id}).mappings().first()
        if row is None or row["customer_id"] != customer:
            raise ApiError(404, "transfer_not_found", "transfer not found")
        return public_transfer(row)
