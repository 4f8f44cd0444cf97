"""An Idempotency-Key's claim carries the operation's first write, and the operation may store its
answer with its last: one commit each instead of two, with nothing half-written in between.
On SQLite and on MariaDB (where a duplicate key fails one statement, not the transaction)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert, select

from obslab.platform.db import Database
from obslab.services.common.idempotency import ClaimKind, IdempotencyStore, idempotency_table


@pytest.fixture
def store(db_url_for):
    metadata = MetaData()
    keys = idempotency_table(metadata)
    rows = Table("movements", metadata, Column("id", String(40), primary_key=True))
    db = Database("movements", metadata, db_url_for("movements"))
    yield IdempotencyStore(db, keys, wait_seconds=0.2, poll_seconds=0.02), rows
    db.engine.dispose()


def written(store: IdempotencyStore, rows: Table) -> list[str]:
    with store.db.connect() as conn:
        return sorted(conn.execute(select(rows.c.id)).scalars())


def test_a_new_claim_writes_the_first_row_with_it_and_a_taken_key_writes_nothing(store):
    store, rows = store
    ids = iter(["mv_1", "mv_2"])

    def begin(conn, resource_id):
        conn.execute(insert(rows), {"id": resource_id})

    first = store.claim("cus_1", "key-1", "hash", lambda: next(ids), begin)
    assert (first.kind, first.resource_id) == (ClaimKind.NEW, "mv_1")
    assert written(store, rows) == ["mv_1"]
    # The same key while the first runs: its claim fails alone, the duplicate writes no row of its own.
    with pytest.raises(Exception, match="still being processed"):
        store.claim("cus_1", "key-1", "hash", lambda: next(ids), begin)
    assert written(store, rows) == ["mv_1"]


def test_a_first_write_that_fails_leaves_the_key_unclaimed(store):
    store, rows = store

    def broken(conn, resource_id):
        conn.execute(insert(rows), {"id": resource_id})
        raise RuntimeError("the service broke between the two writes")

    with pytest.raises(RuntimeError):
        store.claim("cus_1", "key-2", "hash", lambda: "mv_3", broken)
    assert written(store, rows) == []
    again = store.claim("cus_1", "key-2", "hash", lambda: "mv_4")
    assert again.kind is ClaimKind.NEW, "the key was never taken: the retry starts afresh"


def test_an_answer_stored_with_the_last_write_is_replayed(store):
    store, rows = store
    claim = store.claim("cus_1", "key-3", "hash", lambda: f"mv_{uuid.uuid4().hex[:8]}")

    def finish(conn):
        conn.execute(insert(rows), {"id": claim.resource_id})
        store.complete_in(conn, "cus_1", "key-3", 201, {"id": claim.resource_id, "status": "completed"})

    store.db.run(finish)
    replay = store.claim("cus_1", "key-3", "hash", lambda: "unused")
    assert (replay.kind, replay.response_status) == (ClaimKind.REPLAY, 201)
    assert replay.response_body == {"id": claim.resource_id, "status": "completed"}


def test_a_failure_after_the_answer_was_stored_does_not_reopen_the_key(store):
    store, rows = store
    claim = store.claim("cus_1", "key-4", "hash", lambda: "mv_5")
    store.db.run(lambda conn: store.complete_in(conn, "cus_1", "key-4", 201, {"id": "mv_5"}))
    store.release("cus_1", "key-4")     # what the runner does when something fails after that
    replay = store.claim("cus_1", "key-4", "hash", lambda: "unused")
    assert (replay.kind, replay.resource_id, replay.response_body) == (ClaimKind.REPLAY, claim.resource_id,
                                                                       {"id": "mv_5"})
