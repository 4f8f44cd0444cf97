"""The accounts service's ledger: balances, movements and their double-entry lines.

A movement debits one account and credits another in ONE database transaction, so money is
never created or lost: the sum over all accounts (customer and system) never changes. A
movement id is unique: applying the same movement twice returns the first result and moves
nothing (callers retry safely). Rows are locked in id order, so two movements between the same
accounts in opposite directions cannot deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from obslab import conventions as c
from obslab.services.common.clock import now_ms
from obslab.services.common.db import Database
from obslab.services.common.ids import new_id

metadata = MetaData()

accounts = Table(
    "accounts", metadata,
    Column("id", String(40), primary_key=True),
    Column("owner_id", String(40), nullable=True),   # NULL for the bank's own system accounts
    Column("type", String(16), nullable=False),       # checking, savings, system
    Column("currency", String(3), nullable=False),
    Column("balance_minor", BigInteger, nullable=False),
    Column("allow_negative", Boolean, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_accounts_owner", "owner_id"),
)

movements = Table(
    "movements", metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("debit_account", String(40), nullable=False),
    Column("credit_account", String(40), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

entries = Table(
    "entries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("movement_id", String(64), nullable=False),
    Column("account_id", String(40), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),          # signed: debit < 0 < credit
    Column("balance_after_minor", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_entries_account", "account_id", "id"),
)


class MovementKind(str, Enum):
    TRANSFER = "transfer"
    PAYMENT = "payment"
    REFUND = "refund"
    DEPOSIT = "deposit"


class LedgerError(Exception):
    """A movement refused by a ledger rule; ``code`` and ``status`` go into the API error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Movement:
    id: str
    kind: str
    debit_account: str
    credit_account: str
    amount_minor: int
    currency: str
    created_ms: int
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "debit_account": self.debit_account,
            "credit_account": self.credit_account, "amount_minor": self.amount_minor,
            "currency": self.currency, "created_ms": self.created_ms,
        }


def _movement(row: Any, replayed: bool = False) -> Movement:
    return Movement(row["id"], row["kind"], row["debit_account"], row["credit_account"],
                    row["amount_minor"], row["currency"], row["created_ms"], replayed)


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- accounts ------------------------------------------------------------------------

    def open_account(self, owner_id: str, account_type: str, currency: str) -> dict[str, Any]:
        account_id = new_id(c.ACCOUNT_ID_PREFIX)
        self.db.run(lambda conn: conn.execute(insert(accounts).values(
            id=account_id, owner_id=owner_id, type=account_type, currency=currency, balance_minor=0,
            allow_negative=False, created_ms=now_ms(),
        )))
        return {"id": account_id, "owner": owner_id, "type": account_type, "currency": currency,
                "balance_minor": 0}

    def ensure_system_account(self, purpose: str, currency: str) -> str:
        account_id = c.system_account_id(purpose, currency)
        try:
            self.db.run(lambda conn: conn.execute(insert(accounts).values(
                id=account_id, owner_id=None, type="system", currency=currency, balance_minor=0,
                allow_negative=True, created_ms=now_ms(),
            )))
        except IntegrityError:
            pass  # exists already (or another worker created it a moment ago)
        return account_id

    def accounts_of(self, owner_id: str) -> list[dict[str, Any]]:
        with self.db.connect() as conn:
            rows = conn.execute(
                select(accounts).where(accounts.c.owner_id == owner_id).order_by(accounts.c.created_ms, accounts.c.id)
            ).mappings().all()
        return [self._public(row) for row in rows]

    def account(self, account_id: str) -> dict[str, Any] | None:
        with self.db.connect() as conn:
            row = conn.execute(select(accounts).where(accounts.c.id == account_id)).mappings().first()
        return self._public(row) if row else None

    @staticmethod
    def _public(row: Any) -> dict[str, Any]:
        return {"id": row["id"], "owner": row["owner_id"], "type": row["type"], "currency": row["currency"],
                "balance_minor": row["balance_minor"]}

    # --- movements -----------------------------------------------------------------------

    def apply(
        self,
        movement_id: str,
        kind: MovementKind,
        debit_account: str,
        credit_account: str,
        amount_minor: int,
        currency: str,
        owner_id: str | None,
    ) -> Movement:
        """Move ``amount_minor`` from debit to credit, once per ``movement_id``.

        ``owner_id`` must own the debit account unless it is a system account (refunds,
        deposits); a mismatch looks exactly like a missing account, so ids cannot be probed.
        """
        if amount_minor <= 0:
            raise LedgerError(400, "invalid_amount", "amount must be positive")
        if debit_account == credit_account:
            raise LedgerError(400, "same_account", "source and destination account are the same")
        wanted = (kind.value, debit_account, credit_account, amount_minor, currency)
        try:
            return self.db.run(lambda conn: self._apply(
                conn, movement_id, kind, debit_account, credit_account, amount_minor, currency, owner_id
            ))
        except IntegrityError:
            # A concurrent request with the same movement id won; report what it did.
            existing = self.movement(movement_id)
            if existing is None:
                raise
            return self._replay(existing, wanted)

    def movement(self, movement_id: str) -> Movement | None:
        with self.db.connect() as conn:
            row = conn.execute(select(movements).where(movements.c.id == movement_id)).mappings().first()
        return _movement(row) if row else None

    @staticmethod
    def _replay(existing: Movement, wanted: tuple) -> Movement:
        have = (existing.kind, existing.debit_account, existing.credit_account,
                existing.amount_minor, existing.currency)
        if have != wanted:
            raise LedgerError(409, "movement_conflict",
                              f"movement {existing.id} already exists with different parameters")
        return Movement(**{**existing.__dict__, "replayed": True})

    def _apply(
        self,
        conn: Connection,
        movement_id: str,
        kind: MovementKind,
        debit_account: str,
        credit_account: str,
        amount_minor: int,
        currency: str,
        owner_id: str | None,
    ) -> Movement:
        wanted = (kind.value, debit_account, credit_account, amount_minor, currency)
        row = conn.execute(select(movements).where(movements.c.id == movement_id)).mappings().first()
        if row is not None:
            return self._replay(_movement(row), wanted)

        locked = {
            r["id"]: r for r in conn.execute(
                select(accounts).where(accounts.c.id.in_([debit_account, credit_account]))
                .order_by(accounts.c.id).with_for_update()
            ).mappings().all()
        }
        debit = locked.get(debit_account)
        credit = locked.get(credit_account)
        if debit is None or (debit["owner_id"] is not None and debit["owner_id"] != owner_id):
            raise LedgerError(404, "account_not_found", "source account not found")
        if credit is None:
            raise LedgerError(404, "account_not_found", "destination account not found")
        for side, account in (("source", debit), ("destination", credit)):
            if account["currency"] != currency:
                raise LedgerError(422, "currency_mismatch",
                                  f"{side} account holds {account['currency']}, not {currency}")
        debit_after = debit["balance_minor"] - amount_minor
        if debit_after < 0 and not debit["allow_negative"]:
            raise LedgerError(422, "insufficient_funds", "insufficient funds in the source account")
        credit_after = credit["balance_minor"] + amount_minor

        now = now_ms()
        conn.execute(insert(movements).values(
            id=movement_id, kind=kind.value, debit_account=debit_account, credit_account=credit_account,
            amount_minor=amount_minor, currency=currency, created_ms=now,
        ))
        conn.execute(update(accounts).where(accounts.c.id == debit_account)
                     .values(balance_minor=accounts.c.balance_minor - amount_minor))
        conn.execute(update(accounts).where(accounts.c.id == credit_account)
                     .values(balance_minor=accounts.c.balance_minor + amount_minor))
        conn.execute(insert(entries), [
            {"movement_id": movement_id, "account_id": debit_account, "amount_minor": -amount_minor,
             "balance_after_minor": debit_after, "created_ms": now},
            {"movement_id": movement_id, "account_id": credit_account, "amount_minor": amount_minor,
             "balance_after_minor": credit_after, "created_ms": now},
        ])
        return Movement(movement_id, kind.value, debit_account, credit_account, amount_minor, currency, now)

    def total_balance(self) -> int:
        """Sum of every balance, system accounts included: zero by construction."""
        with self.db.connect() as conn:
            rows = conn.execute(select(accounts.c.balance_minor)).scalars().all()
        return sum(rows)
