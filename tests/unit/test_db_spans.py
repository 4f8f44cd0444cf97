"""One span per unit of work: its statements, its lock wait, its errors (obslab/telemetry/dbspans.py)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from obslab.platform.db import Database
from obslab.telemetry import dbspans


@pytest.fixture
def spans(monkeypatch):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(dbspans.trace, "get_tracer", lambda name, *a, **k: provider.get_tracer(name))
    return exporter


def _db(tmp_path):
    metadata = MetaData()
    table = Table("accounts", metadata, Column("id", Integer, primary_key=True), Column("owner", String(20), unique=True),
                  Column("balance", Integer))
    return Database("accounts", metadata, f"sqlite:///{tmp_path / 'accounts.sqlite3'}"), table


def test_a_write_transaction_is_one_span_named_after_its_statements(tmp_path, spans):
    db, accounts = _db(tmp_path)
    spans.clear()          # the schema's creation runs outside any unit

    def move(conn):
        conn.execute(insert(accounts).values(id=1, owner="alice", balance=100))
        conn.execute(update(accounts).where(accounts.c.id == 1).values(balance=90))
        conn.execute(insert(accounts).values(id=2, owner="bob", balance=10))

    db.run(move)
    [span] = spans.get_finished_spans()
    assert span.name == "INSERT accounts, UPDATE accounts"
    assert span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes)
    assert attributes["db.system.name"] == "sqlite" and attributes["db.namespace"] == "accounts"
    assert attributes["db.operation.batch.size"] == 3
    assert attributes["db.query.text"].startswith("INSERT INTO accounts (id, owner, balance) VALUES (?, ?, ?); UPDATE")
    assert "alice" not in attributes["db.query.text"]          # parameters are never rendered
    assert span.status.status_code is StatusCode.UNSET


def test_reads_are_a_span_each_and_nest_under_the_current_span(tmp_path, spans):
    db, accounts = _db(tmp_path)
    spans.clear()
    tracer = dbspans.trace.get_tracer("test")
    with tracer.start_as_current_span("GET /accounts") as parent:
        with db.connect() as conn:
            conn.execute(select(accounts)).all()
    db_span, request_span = spans.get_finished_spans()
    assert db_span.name == "SELECT accounts"
    assert db_span.parent.span_id == parent.get_span_context().span_id
    assert request_span.name == "GET /accounts"


def test_a_database_error_marks_the_span_and_a_refusal_raised_by_the_app_does_not(tmp_path, spans):
    db, accounts = _db(tmp_path)
    db.run(lambda conn: conn.execute(insert(accounts).values(id=1, owner="alice", balance=1)))
    spans.clear()
    with pytest.raises(IntegrityError):
        db.run(lambda conn: conn.execute(insert(accounts).values(id=2, owner="alice", balance=1)))

    def refuse(conn):
        conn.execute(select(accounts)).all()
        raise ValueError("insufficient funds")

    with pytest.raises(ValueError):
        db.run(refuse)
    failed, refused = spans.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes["error.type"] == "IntegrityError"
    assert failed.status.description == "UNIQUE constraint failed: accounts.owner"     # the driver's words
    assert failed.attributes["db.query.text"].startswith("INSERT INTO accounts")       # the failing statement last
    assert [event.name for event in failed.events] == ["exception"]
    assert refused.status.status_code is StatusCode.UNSET and not refused.events


@pytest.mark.parametrize("statement, summary", [
    ("SELECT accounts.id FROM accounts WHERE accounts.id = ?", "SELECT accounts"),
    ('INSERT INTO "movements" (id) VALUES (?)', "INSERT movements"),
    ("UPDATE accounts SET balance=? WHERE accounts.id = ?", "UPDATE accounts"),
    ("DELETE FROM idempotency WHERE expires < ?", "DELETE idempotency"),
    ("PRAGMA foreign_keys=ON", "PRAGMA"),
    ("select 1", "SELECT"),
])
def test_each_statement_is_summarised_by_its_operation_and_table(statement, summary):
    assert dbspans.summarise(statement) == summary


def test_a_long_unit_keeps_its_name_short():
    statements = [f"INSERT INTO t{i} (a) VALUES (?)" for i in range(7)] + ["INSERT INTO t0 (a) VALUES (?)"]
    assert dbspans.query_summary(statements, "x") == "INSERT t0, INSERT t1, INSERT t2, INSERT t3 (+3)"
    assert dbspans.query_summary([], "accounts") == "accounts"


def test_a_mysql_url_that_reaches_mariadb_is_labelled_mariadb(spans):
    from tests.support import MYSQL_SERVER_URL, mysql_reachable

    if not mysql_reachable():
        pytest.fail(f"MariaDB is not reachable at {MYSQL_SERVER_URL}; run `obslab doctor --install --mariadb`")
    metadata = MetaData()
    table = Table("probe", metadata, Column("id", Integer, primary_key=True))
    db = Database("accounts", metadata, f"{MYSQL_SERVER_URL.rstrip('/')}/obslab_dbspans_probe")
    try:
        spans.clear()
        with db.connect() as conn:
            conn.execute(select(table)).all()
        [span] = spans.get_finished_spans()
        assert span.attributes["db.system.name"] == "mariadb"      # known only after the first connection
        assert span.attributes["db.namespace"] == "obslab_dbspans_probe"
        assert span.attributes["server.address"] == "127.0.0.1"
    finally:
        db.drop_everything()


def test_statements_are_collected_only_for_a_span_that_records(tmp_path, spans, monkeypatch):
    db, accounts = _db(tmp_path)
    seen = []

    def work(conn):
        conn.execute(insert(accounts).values(id=len(seen) + 1, owner=f"o{len(seen)}", balance=1))
        seen.append(dbspans._statements.get())

    db.run(work)                   # recorded: the unit's list holds the insert
    from opentelemetry.trace import NoOpTracerProvider

    monkeypatch.setattr(db._spans, "_tracer", NoOpTracerProvider().get_tracer("none"))
    db.run(work)                   # not recorded (the trace sink has no SDK): nothing is collected
    assert seen[0] == ["INSERT INTO accounts (id, owner, balance) VALUES (?, ?, ?)"] and seen[1] is None
