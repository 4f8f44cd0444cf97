"""The gateway's batched audit writer on a real SQLite database: rows arrive together and in
order, a stop writes what is queued, and a database that stops taking rows costs counted lines,
never the request or unbounded memory."""

from __future__ import annotations

import threading

from sqlalchemy import select

from obslab import conventions as c
from obslab.platform.db import Database
from obslab.services.gateway.app import audit_log, metadata
from obslab.services.gateway.audit import AuditWriter
from obslab.telemetry.metrics import MetricSet


def row(i: int) -> dict:
    return {"at_ms": 1_000 + i, "customer_id": None, "method": "POST", "route": "/api/v1/auth/login",
            "status": 400, "trace_id": None, "idempotency_key_sha256": None}


def audited(metrics: MetricSet, outcome: str) -> float:
    return metrics.registry.get_sample_value("gateway_audit_records_total", {"outcome": outcome}) or 0.0


def stored(db: Database) -> list[int]:
    return db.run(lambda conn: [r.at_ms for r in conn.execute(select(audit_log).order_by(audit_log.c.id))])


def test_records_are_written_together_in_order_and_a_close_writes_what_is_queued(tmp_path):
    db = Database(c.GATEWAY, metadata, f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    metrics = MetricSet()
    inserts = []
    real_run = db.run
    db.run = lambda work: (inserts.append(1), real_run(work))[1]
    writer = AuditWriter(db, audit_log, metrics, max_delay_s=30, max_batch=100)
    threads = [threading.Thread(target=lambda k=k: [writer.record(row(k * 50 + i)) for i in range(50)])
               for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert sorted(stored(db)) == [1_000 + i for i in range(250)]
    assert len(inserts) <= 5, "250 rows in batches of at most 100, not 250 inserts"
    assert audited(metrics, "written") == 250 and audited(metrics, "failed") == 0


def test_a_database_that_stops_taking_rows_costs_counted_lines_and_bounded_memory(tmp_path, caplog):
    db = Database(c.GATEWAY, metadata, f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    metrics = MetricSet()
    failing = threading.Event()

    def run(work):
        if failing.is_set():
            raise RuntimeError("database gone")
        return Database.run(db, work)

    db.run = run
    writer = AuditWriter(db, audit_log, metrics, max_delay_s=30, max_batch=100, max_pending=25)
    failing.set()
    for i in range(40):
        writer.record(row(i))
    assert audited(metrics, "failed") == 15, "what did not fit in the queue is counted at once"
    writer.flush()
    assert audited(metrics, "failed") == 40 and audited(metrics, "written") == 0
    assert any("audit records not written" in r.getMessage() for r in caplog.records)
    failing.clear()
    writer.record(row(99))
    writer.close()
    assert stored(db) == [1_099] and audited(metrics, "written") == 1


def test_a_stop_that_runs_out_of_time_counts_what_it_could_not_write_and_refuses_later_records(tmp_path):
    db = Database(c.GATEWAY, metadata, f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    metrics = MetricSet()
    writer = AuditWriter(db, audit_log, metrics, max_delay_s=30, max_batch=100)   # the thread never wakes
    for i in range(35):
        writer.record(row(i))
    writer.close(timeout=0)   # the deadline has passed before the first batch
    assert stored(db) == [] and audited(metrics, "failed") == 35
    writer.record(row(99))    # a request still running after the stop
    writer.flush()
    assert stored(db) == [] and audited(metrics, "failed") == 36 and audited(metrics, "written") == 0
