"""``Idempotency-Key`` semantics for operations that move money.

The same key (per customer) with the same request runs the operation once and afterwards
returns the first result. The same key with a different request is refused (422). While the
first request is still running, a duplicate waits briefly for its result, then gets 409.

A request that failed for a technical reason (a dependency down) releases its key; a retry with
that key resumes the *same* operation id, and the downstream ledger, which is idempotent on that
id, guarantees money moves at most once even if the first attempt got further than it knew.
A request whose process died mid-way holds a lease that expires, after which it can be resumed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import (
    BigInteger, Column, Connection, Integer, MetaData, String, Table, Text, bindparam, insert, select, update,
)
from sqlalchemy.exc import IntegrityError

from obslab.platform.db import Database
from obslab.platform.errors import ApiError


def idempotency_table(metadata: MetaData) -> Table:
    return Table(
        "idempotency_keys", metadata,
        Column("customer_id", String(64), primary_key=True),
        Column("idempotency_key", String(255), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("resource_id", String(64), nullable=False),
        Column("state", String(16), nullable=False),
        Column("lease_expires_ms", BigInteger, nullable=False),
        Column("response_status", Integer),
        Column("response_body", Text),
        Column("created_ms", BigInteger, nullable=False),
    )


class ClaimKind(str, Enum):
    NEW = "new"          # first time: run the operation
    RESUME = "resume"    # an earlier attempt failed technically or died: run it again, same id
    REPLAY = "replay"    # already done: return the stored response


@dataclass(frozen=True)
class Claim:
    kind: ClaimKind
    resource_id: str
    response_status: int | None = None
    response_body: Any = None
    # When this claim's lease ends: it tells this claim from a later one on the same key (a
    # duplicate that resumed after the lease ran out) when the claim is released.
    lease_expires_ms: int | None = None


def _not_canonical(value: Any) -> Any:
    raise TypeError(
        f"a {type(value).__name__} in an idempotency fingerprint could be written in more than one way: "
        "give amounts in integer minor units and everything else as JSON values")


def request_fingerprint(operation: str, payload: dict[str, Any]) -> str:
    """What makes two requests "the same" for an Idempotency-Key: their canonical JSON, hashed.

    ``payload`` holds JSON values only, amounts as integer minor units (``"2.00"`` and ``"2"`` are
    one request: 200). A ``Decimal`` is refused rather than turned into text, where ``2`` and
    ``2.00`` would differ.
    """
    canonical = json.dumps({"operation": operation, "request": payload}, sort_keys=True, default=_not_canonical)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


class IdempotencyStore:
    _IN_PROGRESS = "in_progress"
    _RETRYABLE = "retryable"
    _DONE = "done"

    # A duplicate waits for the first request's answer at most ``wait_seconds``: well below
    # the callers' 5 s timeout, so it gets a clear 409 instead of its caller timing out.
    def __init__(self, db: Database, table: Table, *, lease_seconds: float = 30.0,
                 wait_seconds: float = 2.0, poll_seconds: float = 0.05) -> None:
        self.db = db
        self.table = table
        self.lease_ms = int(lease_seconds * 1000)
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        # The statements of every request, built once: building one costs more than running it.
        self._insert = insert(table)
        # A stored answer is final: a request failing after its operation stored it (complete_in)
        # must not replace it with its own.
        self._complete = update(table).where(
            (table.c.customer_id == bindparam("key_customer_id")) & (table.c.idempotency_key == bindparam("key"))
            & (table.c.state == self._IN_PROGRESS)
        ).values(state=self._DONE, response_status=bindparam("status"), response_body=bindparam("body"))

    def claim(self, customer_id: str, key: str, fingerprint: str, new_id: Callable[[], str],
              begin: Callable[[Connection, str], None] | None = None) -> Claim:
        """``begin(conn, resource_id)``: the operation's first write, committed with a new claim
        (one unit of work, one commit); a resumed or replayed claim does not run it."""
        resource_id = new_id()
        now = _now_ms()
        lease_expires = now + self.lease_ms

        def claim_new(conn: Connection) -> bool:
            try:
                conn.execute(self._insert, {
                    "customer_id": customer_id, "idempotency_key": key, "request_hash": fingerprint,
                    "resource_id": resource_id, "state": self._IN_PROGRESS,
                    "lease_expires_ms": lease_expires, "created_ms": now,
                })
            except IntegrityError:
                return False    # the key is taken; only this statement failed, nothing was written
            if begin is not None:
                begin(conn, resource_id)
            return True

        if self.db.run(claim_new):
            return Claim(ClaimKind.NEW, resource_id, lease_expires_ms=lease_expires)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            claim = self._claim_existing(customer_id, key, fingerprint)
            if claim is not None:
                return claim
            if time.monotonic() >= deadline:
                raise ApiError(409, "request_in_progress",
                               "a request with this Idempotency-Key is still being processed; retry later")
            time.sleep(self.poll_seconds)

    def _claim_existing(self, customer_id: str, key: str, fingerprint: str) -> Claim | None:
        t = self.table
        pk = (t.c.customer_id == customer_id) & (t.c.idempotency_key == key)
        with self.db.connect() as conn:
            row = conn.execute(select(t).where(pk)).mappings().one()
        if row["request_hash"] != fingerprint:
            raise ApiError(422, "idempotency_key_reused",
                           "this Idempotency-Key was already used for a different request; "
                           "use a new key for a new operation")
        if row["state"] == self._DONE:
            return Claim(ClaimKind.REPLAY, row["resource_id"], row["response_status"],
                         json.loads(row["response_body"]))
        now = _now_ms()
        lease_expires = now + self.lease_ms
        if row["state"] == self._RETRYABLE or row["lease_expires_ms"] < now:
            # Compare-and-set on the row we read, so that only one duplicate takes the lease.
            taken = self.db.run(lambda conn: conn.execute(
                update(t).where(pk & (t.c.state == row["state"])
                                & (t.c.lease_expires_ms == row["lease_expires_ms"]))
                .values(state=self._IN_PROGRESS, lease_expires_ms=lease_expires)
            ).rowcount)
            if taken == 1:
                return Claim(ClaimKind.RESUME, row["resource_id"], lease_expires_ms=lease_expires)
        return None

    def complete(self, customer_id: str, key: str, status: int, body: Any) -> None:
        self.db.run(lambda conn: self.complete_in(conn, customer_id, key, status, body))

    def complete_in(self, conn: Connection, customer_id: str, key: str, status: int, body: Any) -> None:
        """Store the answer for ``key`` in the caller's unit of work (with the operation's final write)."""
        conn.execute(self._complete, {
            "key_customer_id": customer_id, "key": key, "status": status, "body": json.dumps(body),
        })

    def release(self, customer_id: str, key: str, claim: Claim) -> None:
        """Let a retry resume the operation ``claim`` was for. Only while that claim holds the key:
        a key whose answer is already stored stays done (an operation may store it with its last
        write, :meth:`complete_in`, and fail afterwards), and a claim that outlived its lease
        leaves alone the duplicate that resumed meanwhile."""
        t = self.table
        self.db.run(lambda conn: conn.execute(
            update(t).where((t.c.customer_id == customer_id) & (t.c.idempotency_key == key)
                            & (t.c.state == self._IN_PROGRESS)
                            & (t.c.lease_expires_ms == claim.lease_expires_ms))
            .values(state=self._RETRYABLE)
        ))
