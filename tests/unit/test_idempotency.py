"""An Idempotency-Key's claim carries the operation's first write, and the operation may store its
answer with its last: one commit each instead of two, with nothing half-written in between.
On SQLite and on MariaDB (where a duplicate key fails one statement, not the transaction)."""

from __future__ import annotations

import time
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
    store.release("cus_1", "key-4", claim)     # what the runner does when something fails after that
    replay = store.claim("cus_1", "key-4", "hash", lambda: "unused")
    assert (replay.kind, replay.resource_id, replay.response_body) == (ClaimKind.REPLAY, claim.resource_id,
                                                                       {"id": "mv_5"})


def test_a_stored_answer_is_not_replaced_by_a_later_one(store):
    store, rows = store
    store.claim("cus_1", "key-5", "hash", lambda: "mv_6")
    store.db.run(lambda conn: store.complete_in(conn, "cus_1", "key-5", 201, {"id": "mv_6"}))
    store.complete("cus_1", "key-5", 422, {"error": "too_late"})   # a request failing after its answer was stored
    replay = store.claim("cus_1", "key-5", "hash", lambda: "unused")
    assert (replay.response_status, replay.response_body) == (201, {"id": "mv_6"})


def test_a_resumed_movement_whose_first_write_fails_frees_its_key_for_the_next_retry(store):
    from flask import Flask

    from obslab.conventions import TransactionStatus, TransactionType
    from obslab.services.common.movement import MovementRunner, Outcome
    from obslab.telemetry import MetricSet

    store, rows = store
    runner = MovementRunner(TransactionType.TRANSFER, store, MetricSet(process_metrics=False))
    attempts: list[str] = []
    begins: list[str] = []

    def begin(conn, resource_id):
        begins.append(resource_id)
        if len(begins) == 2:
            raise ConnectionError("the database went away")     # the first resumed attempt's first write
        conn.execute(insert(rows), {"id": resource_id})

    def execute(resource_id):
        attempts.append(resource_id)
        if len(attempts) == 1:
            raise ConnectionError("a dependency went away")     # the first attempt: technical failure
        return Outcome(TransactionStatus.COMPLETED, 201, {"id": resource_id})

    def run():
        return runner.run("cus_1", "key-6", {"amount_minor": 1}, lambda: "mv_7", execute, begin=begin)

    with Flask("t").test_request_context():
        for _ in range(2):
            with pytest.raises(ConnectionError):
                run()
        response, status = run()        # not a 409: each failed attempt gave its key back
    assert status == 201 and response.get_json() == {"id": "mv_7"}
    assert attempts == ["mv_7", "mv_7"] and len(begins) == 3 and written(store, rows) == ["mv_7"]


def test_telling_the_customer_never_fails_a_movement_whatever_breaks(caplog):
    from types import SimpleNamespace

    from obslab import conventions as c
    from obslab.services.common.notify import notify_customer
    from obslab.telemetry import MetricSet

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug in the client, not the notifications service being down")

    metrics = MetricSet(process_metrics=False)
    notify_customer(SimpleNamespace(call=broken), metrics, "cus_1", "transfer_sent", "trf_1", "You sent 1.00 EUR.")
    assert metrics.registry.get_sample_value(c.NOTIFICATIONS_DROPPED.name, {"kind": "transfer_sent"}) == 1
    assert "notification not delivered" in caplog.text


def test_a_claim_that_outlived_its_lease_cannot_release_the_duplicate_that_resumed(store):
    store, rows = store
    store.lease_ms = 1      # the first claim's lease runs out at once
    first = store.claim("cus_1", "key-7", "hash", lambda: "mv_8")
    time.sleep(0.01)
    store.lease_ms = 30_000
    resumed = store.claim("cus_1", "key-7", "hash", lambda: "unused")
    assert (resumed.kind, resumed.resource_id) == (ClaimKind.RESUME, "mv_8")
    store.release("cus_1", "key-7", first)     # the slow first request fails at last
    with pytest.raises(Exception, match="still being processed"):
        store.claim("cus_1", "key-7", "hash", lambda: "unused")    # the resumed one still holds the key
    store.release("cus_1", "key-7", resumed)
    assert store.claim("cus_1", "key-7", "hash", lambda: "unused").kind is ClaimKind.RESUME
