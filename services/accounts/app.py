"""accounts service: accounts, balances and the ledger that moves money atomically.

Routes (internal; who may call each is in obslab/topology.py). "The customer" is the one the
gateway's signed assertion names (obslab/platform/identity.py), never a field a caller chose:
  GET  /accounts                      the customer's accounts
  POST /accounts {currency, type}     open an account for the customer (balance 0)
  GET  /accounts/<id>                 one account; 404 unless the customer owns it
  POST /movements {id, kind, debit_account, credit_account, amount_minor, currency}
                                      apply a movement once per id (201; 200 when replayed);
                                      transactions may ask for transfers, payments for payments
                                      and refunds, each for the customer it acts for
  POST /deposits {id, account, amount_minor, currency}
                                      credit a customer account from the bank's cash account
                                      (the load generator's salaries, the demo data)
  GET  /ledger/invariants             what in the books no legitimate operation could have written
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import Flask
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from obslab import conventions as c
from obslab.services.common import money
from obslab.platform.app import ServiceContext, caller, create_service_app, parse_body, require_customer
from obslab.platform.errors import ApiError
from obslab.platform.identity import CALLER_NOT_ALLOWED
from obslab.services.accounts.ledger import CUSTOMER_KINDS, Ledger, LedgerError, MovementKind, metadata
from obslab.services.common.money import (
    CURRENCIES,
    MAX_AMOUNT,
    MINOR_UNITS_PER_MAJOR,
    Currency,
    amount_bucket,
    to_decimal_string,
)
from obslab.telemetry import mask_account

MAX_ACCOUNTS_PER_CUSTOMER = 10
MAX_MINOR = int(MAX_AMOUNT * MINOR_UNITS_PER_MAJOR)

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
AccountType = Literal["checking", "savings"]
MinorAmount = Annotated[int, Field(gt=0, le=MAX_MINOR, strict=True)]
# Which movements each internal caller may ask for: a notifications or fraud service may ask
# for none, and nobody but payments may touch the settlement account.
KINDS_BY_CALLER: dict[str, frozenset[MovementKind]] = {
    c.TRANSACTIONS: frozenset({MovementKind.TRANSFER}),
    c.PAYMENTS: frozenset({MovementKind.PAYMENT, MovementKind.REFUND}),
}


class OpenAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: Currency
    type: AccountType = "checking"


class MovementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Identifier
    kind: MovementKind
    debit_account: Identifier
    credit_account: Identifier
    amount_minor: MinorAmount
    currency: Currency


class DepositRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Identifier
    account: Identifier
    amount_minor: MinorAmount
    currency: Currency


def public_account(account: dict[str, Any]) -> dict[str, Any]:
    return {**account, "balance": to_decimal_string(account["balance_minor"])}


def create_app(db_url: str | None = None) -> Flask:
    return create_service_app(
        c.ACCOUNTS, _routes, metadata=metadata, db_url=db_url, metric_specs=[c.LEDGER_MOVEMENTS],
    )


def _routes(app: Flask, ctx: ServiceContext) -> None:
    assert ctx.db is not None
    ledger = Ledger(ctx.db)

    @app.get("/accounts")
    def list_accounts():
        return [public_account(a) for a in ledger.accounts_of(require_customer())]

    @app.post("/accounts")
    def open_account():
        owner = require_customer()
        body = parse_body(OpenAccount)
        if len(ledger.accounts_of(owner)) >= MAX_ACCOUNTS_PER_CUSTOMER:
            raise ApiError(422, "too_many_accounts",
                           f"a customer can hold at most {MAX_ACCOUNTS_PER_CUSTOMER} accounts")
        return public_account(ledger.open_account(owner, body.type, body.currency)), 201

    @app.get("/accounts/<account_id>")
    def get_account(account_id: str):
        owner = require_customer()
        account = ledger.account(account_id)
        if account is None or account["owner"] != owner:
            raise ApiError(404, "account_not_found", "account not found")
        return public_account(account)

    def apply(kind: MovementKind, movement_id: str, debit: str, credit: str, amount_minor: int,
              currency: str, owner: str | None):
        span = trace.get_current_span()
        span.set_attribute(c.ATTR_AMOUNT_BUCKET, amount_bucket(amount_minor))
        span.set_attribute(c.ATTR_CURRENCY, currency)
        span.set_attribute(c.ATTR_ACCOUNT_MASKED, mask_account(debit))
        span.set_attribute(c.ATTR_COUNTERPARTY_MASKED, mask_account(credit))
        try:
            movement = ledger.apply(movement_id, kind, debit, credit, amount_minor, currency, owner)
        except LedgerError as exc:
            ctx.metrics.count(c.LEDGER_MOVEMENTS, kind=kind.value, outcome=exc.code)
            span.set_attribute(c.ATTR_ERROR_CODE, exc.code)
            raise ApiError(exc.status, exc.code, exc.message) from None
        outcome = "replayed" if movement.replayed else "applied"
        ctx.metrics.count(c.LEDGER_MOVEMENTS, kind=kind.value, outcome=outcome)
        span.set_attribute(c.ATTR_OUTCOME, outcome)
        return {**movement.as_dict(), "replayed": movement.replayed}, 200 if movement.replayed else 201

    @app.post("/movements")
    def create_movement():
        body = parse_body(MovementRequest)
        if body.kind not in KINDS_BY_CALLER.get(caller(), frozenset()):
            raise ApiError(403, CALLER_NOT_ALLOWED, f"{caller()} may not ask for {body.kind.value} movements")
        owner = require_customer() if body.kind in CUSTOMER_KINDS else None
        return apply(body.kind, body.id, body.debit_account, body.credit_account, body.amount_minor,
                     body.currency, owner)

    @app.post("/deposits")
    def deposit():
        body = parse_body(DepositRequest)
        cash = ledger.ensure_system_account(money.SYSTEM_ACCOUNT_CASH, body.currency)
        return apply(MovementKind.DEPOSIT, body.id, cash, body.account, body.amount_minor, body.currency, None)

    @app.get("/ledger/invariants")
    def invariants():
        problems = ledger.invariant_violations()
        return {"sound": not problems, "violations": problems}

    # Card payments settle into this account; make sure it exists for every currency up front.
    for currency in sorted(CURRENCIES):
        ledger.ensure_system_account(money.SYSTEM_ACCOUNT_SETTLEMENT, currency)
