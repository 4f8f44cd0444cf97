"""The accounts service's ledger: balances, movements and their double-entry lines.

A movement debits one account and credits another in ONE database transaction, so money is
never created or lost: the sum over all accounts (customer and system) never changes. A
movement id is unique: applying the same movement twice returns the first result and moves
nothing (callers retry safely). Rows are locked in id order, so two movements between the same
accounts in opposite directions cannot deadlock.

Conservation alone cannot see money taken from the bank: a customer who debits the bank's own
settlement account into their own keeps the sum at zero. So every kind of movement has fixed
ends (:data:`MOVEMENT_RULES`), checked when it is applied and again by
:meth:`Ledger.invariant_violations` over the whole history:

- transfer: a customer's own account -> another customer account;
- payment: a customer's own account -> the bank's settlement account (same currency);
- refund: settlement -> the account a payment debited, at most once per payment, same amount;
- deposit: the bank's cash account (the one designated funding source) -> a customer account.

A customer operation (transfer, payment) may debit only an account that customer owns; an
account without an owner is never debitable by one. System accounts move only through the
internal kinds, which only internal callers may ask for (accounts/app.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    bindparam,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from obslab import conventions as c
from obslab.services.common import money
from obslab.platform.clock import now_ms
from obslab.platform.db import Database
from obslab.platform.ids import new_id

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

# Who asked for each customer movement (the customer the gateway vouched for): the books can then
# show that every customer debit was the account owner's own doing. A table of its own so that
# existing databases gain it at start-up (create_all adds tables, never columns).
movement_actors = Table(
    "movement_actors", metadata,
    Column("movement_id", String(64), primary_key=True),
    Column("customer_id", String(40), nullable=False),
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


# The statements of a movement, built once: building one anew costs SQLAlchemy about 60 us per
# execution (coercion and cache keys), four times what executing it costs (obslab/bench/README.md).
_MOVEMENT_BY_ID = select(movements).where(movements.c.id == bindparam("movement_id"))
_LOCK_ACCOUNTS = (select(accounts).where(accounts.c.id.in_(bindparam("account_ids", expanding=True)))
                  .order_by(accounts.c.id).with_for_update())
_INSERT_MOVEMENT = insert(movements)
_INSERT_ACTOR = insert(movement_actors)
_ADD_TO_BALANCE = (update(accounts).where(accounts.c.id == bindparam("account_id"))
                   .values(balance_minor=accounts.c.balance_minor + bindparam("delta_minor")))
_INSERT_ENTRIES = insert(entries)


class MovementKind(str, Enum):
    TRANSFER = "transfer"
    PAYMENT = "payment"
    REFUND = "refund"
    DEPOSIT = "deposit"


CUSTOMER_KINDS = frozenset({MovementKind.TRANSFER, MovementKind.PAYMENT})
REFUND_SUFFIX = "-refund"
_CUSTOMER = "customer"  # any account with an owner


@dataclass(frozen=True)
class MovementRule:
    """What each end of a movement of one kind must be: a customer account, or the bank's
    system account for ``purpose`` (in the movement's currency)."""

    debit: str
    credit: str


MOVEMENT_RULES: dict[MovementKind, MovementRule] = {
    MovementKind.TRANSFER: MovementRule(_CUSTOMER, _CUSTOMER),
    MovementKind.PAYMENT: MovementRule(_CUSTOMER, money.SYSTEM_ACCOUNT_SETTLEMENT),
    MovementKind.REFUND: MovementRule(money.SYSTEM_ACCOUNT_SETTLEMENT, _CUSTOMER),
    MovementKind.DEPOSIT: MovementRule(money.SYSTEM_ACCOUNT_CASH, _CUSTOMER),
}


def _end_allowed(required: str, account: Any, currency: str) -> bool:
    if required == _CUSTOMER:
        return account["owner_id"] is not None
    return account["owner_id"] is None and account["id"] == money.system_account_id(required, currency)


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
        account_id = money.system_account_id(purpose, currency)
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

        For a customer kind, ``owner_id`` must own the debit account; any mismatch (another
        customer's account, a system account) looks exactly like a missing account, so ids cannot
        be probed. Both ends must be what :data:`MOVEMENT_RULES` says for ``kind``.
        """
        if kind in CUSTOMER_KINDS and not owner_id:
            raise LedgerError(403, "forbidden", f"a {kind.value} acts for a customer; none was given")
        if amount_minor <= 0:
            raise LedgerError(400, "invalid_amount", "amount must be positive")
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
            row = conn.execute(_MOVEMENT_BY_ID, {"movement_id": movement_id}).mappings().first()
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
        row = conn.execute(_MOVEMENT_BY_ID, {"movement_id": movement_id}).mappings().first()
        if row is not None:
            return self._replay(_movement(row), wanted)

        locked = {
            r["id"]: r for r in conn.execute(
                _LOCK_ACCOUNTS, {"account_ids": [debit_account, credit_account]}
            ).mappings().all()
        }
        debit = locked.get(debit_account)
        credit = locked.get(credit_account)
        rule = MOVEMENT_RULES[kind]
        if debit is None or not _end_allowed(rule.debit, debit, currency) \
                or (kind in CUSTOMER_KINDS and debit["owner_id"] != owner_id):
            raise LedgerError(404, "account_not_found", "source account not found")
        if credit is None or not _end_allowed(rule.credit, credit, currency):
            raise LedgerError(404, "account_not_found", "destination account not found")
        if debit_account == credit_account:
            raise LedgerError(400, "same_account", "source and destination account are the same")
        if kind is MovementKind.REFUND:
            self._check_refund(conn, movement_id, credit_account, amount_minor, currency)
        for side, account in (("source", debit), ("destination", credit)):
            if account["currency"] != currency:
                raise LedgerError(422, "currency_mismatch",
                                  f"{side} account holds {account['currency']}, not {currency}")
        debit_after = debit["balance_minor"] - amount_minor
        if debit_after < 0 and not debit["allow_negative"]:
            raise LedgerError(422, "insufficient_funds", "insufficient funds in the source account")
        credit_after = credit["balance_minor"] + amount_minor

        now = now_ms()
        conn.execute(_INSERT_MOVEMENT, {
            "id": movement_id, "kind": kind.value, "debit_account": debit_account,
            "credit_account": credit_account, "amount_minor": amount_minor, "currency": currency,
            "created_ms": now,
        })
        if kind in CUSTOMER_KINDS:
            conn.execute(_INSERT_ACTOR, {"movement_id": movement_id, "customer_id": owner_id})
        conn.execute(_ADD_TO_BALANCE, {"account_id": debit_account, "delta_minor": -amount_minor})
        conn.execute(_ADD_TO_BALANCE, {"account_id": credit_account, "delta_minor": amount_minor})
        conn.execute(_INSERT_ENTRIES, [
            {"movement_id": movement_id, "account_id": debit_account, "amount_minor": -amount_minor,
             "balance_after_minor": debit_after, "created_ms": now},
            {"movement_id": movement_id, "account_id": credit_account, "amount_minor": amount_minor,
             "balance_after_minor": credit_after, "created_ms": now},
        ])
        return Movement(movement_id, kind.value, debit_account, credit_account, amount_minor, currency, now)

    @staticmethod
    def _check_refund(conn: Connection, movement_id: str, account: str, amount_minor: int, currency: str) -> None:
        """A refund returns one payment, whole, to the account it came from (its id says which)."""
        payment_id = movement_id.removesuffix(REFUND_SUFFIX)
        payment = None
        if payment_id != movement_id:
            payment = conn.execute(_MOVEMENT_BY_ID, {"movement_id": payment_id}).mappings().first()
        if payment is None or payment["kind"] != MovementKind.PAYMENT.value or payment["debit_account"] != account \
                or payment["amount_minor"] != amount_minor or payment["currency"] != currency:
            raise LedgerError(422, "refund_without_payment",
                              f"a refund must be <payment id>{REFUND_SUFFIX} and return that payment's amount "
                              "to the account it debited")

    def invariant_violations(self) -> list[str]:
        """Everything in the books that no legitimate operation could have written (empty: sound).

        Money is conserved; every balance is the sum of its entries; every movement's ends are
        what its kind allows (so no system account but the funding source changed except through
        internal operations, and customer money grew only by transfers from other customers,
        refunds of their own payments and deposits); every customer movement was asked for by the
        owner of the account it debited; a refund matches its payment.
        """
        problems: list[str] = []
        with self.db.connect() as conn:
            accounts_by_id = {row["id"]: row for row in conn.execute(select(accounts)).mappings().all()}
            rows = conn.execute(select(movements).order_by(movements.c.created_ms, movements.c.id)).mappings().all()
            sums = dict(conn.execute(
                select(entries.c.account_id, func.sum(entries.c.amount_minor)).group_by(entries.c.account_id)
            ).all())
            actors = dict(conn.execute(select(movement_actors.c.movement_id, movement_actors.c.customer_id)).all())
        total = sum(row["balance_minor"] for row in accounts_by_id.values())
        if total != 0:
            problems.append(f"the balances sum to {total}, not 0: money was created or destroyed")
        for account_id, row in accounts_by_id.items():
            if int(sums.get(account_id) or 0) != row["balance_minor"]:
                problems.append(f"{account_id}: balance {row['balance_minor']} is not the sum of its entries "
                                f"({int(sums.get(account_id) or 0)})")
        by_id = {row["id"]: row for row in rows}
        for row in rows:
            try:
                kind = MovementKind(row["kind"])
            except ValueError:
                problems.append(f"movement {row['id']}: unknown kind {row['kind']!r}")
                continue
            rule = MOVEMENT_RULES[kind]
            for side, required, account_id in (("debit", rule.debit, row["debit_account"]),
                                               ("credit", rule.credit, row["credit_account"])):
                account = accounts_by_id.get(account_id)
                if account is None or not _end_allowed(required, account, row["currency"]):
                    problems.append(f"movement {row['id']} ({kind.value}): {side} account {account_id} is not "
                                    f"a {required} account")
            if kind in CUSTOMER_KINDS:
                debit = accounts_by_id.get(row["debit_account"])
                actor = actors.get(row["id"])
                if actor is None or debit is None or debit["owner_id"] != actor:
                    problems.append(f"movement {row['id']} ({kind.value}): debited {row['debit_account']} for "
                                    f"{actor or 'nobody recorded'}, not its owner")
            if kind is MovementKind.REFUND:
                payment = by_id.get(row["id"].removesuffix(REFUND_SUFFIX))
                if payment is None or payment["id"] == row["id"] or payment["kind"] != MovementKind.PAYMENT.value \
                        or payment["debit_account"] != row["credit_account"] \
                        or payment["amount_minor"] != row["amount_minor"]:
                    problems.append(f"movement {row['id']} (refund): no payment it returns")
        return problems

    def total_balance(self) -> int:
        """Sum of every balance, system accounts included: zero by construction."""
        with self.db.connect() as conn:
            rows = conn.execute(select(accounts.c.balance_minor)).scalars().all()
        return sum(rows)
