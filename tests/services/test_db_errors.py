"""Every error a service's database raises counts in db_errors_total, by a bounded kind.

Real engines made to fail for real: SQLite (missing table, constraint, a lock held by another
connection), MariaDB (closed port, killed connection, lock wait timeout, deadlock).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid

import pytest
import sqlalchemy
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from obslab import conventions as c
from obslab.conventions import DbErrorKind
from obslab.platform.app import context
from obslab.platform.db import Database, report_errors
from obslab.services.fraud.app import create_app as create_fraud
from tests.support import MYSQL_SERVER_URL, free_port, mysql_reachable, service_headers

K = DbErrorKind


def make_metadata() -> MetaData:
    metadata = MetaData()
    Table("items", metadata, Column("id", Integer, primary_key=True), Column("name", String(32)))
    return metadata


def sqlite_database(tmp_path, kinds: list) -> Database:
    return Database("dberrors", make_metadata(), f"sqlite:///{tmp_path / 'db.sqlite3'}", on_error=kinds.append)


@pytest.fixture
def mariadb(tmp_path):
    """``make(kinds)`` -> a Database on the test MariaDB reporting into ``kinds``; dropped after."""
    if not mysql_reachable():
        pytest.fail(f"MariaDB/MySQL is not reachable at {MYSQL_SERVER_URL}; start it "
                    "(`obslab doctor --install --mariadb`) or set OBSLAB_TEST_MYSQL_URL")
    made: list[Database] = []

    def make(kinds: list, **kwargs) -> Database:
        url = f"{MYSQL_SERVER_URL.rstrip('/')}/obslabtest_{uuid.uuid4().hex[:8]}_dberrors"
        db = Database("dberrors", make_metadata(), url, on_error=kinds.append, **kwargs)
        made.append(db)
        return db

    yield make
    for db in made:
        db.drop_everything()


# --- SQLite -------------------------------------------------------------------------------------


def test_a_missing_table_is_kind_other(tmp_path):
    kinds: list = []
    db = sqlite_database(tmp_path, kinds)
    with pytest.raises(OperationalError), db.connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert kinds == [K.OTHER]


def test_a_unique_violation_is_kind_integrity(tmp_path):
    kinds: list = []
    db = sqlite_database(tmp_path, kinds)
    db.run(lambda conn: conn.execute(text("INSERT INTO items (id, name) VALUES (1, 'a')")))
    with pytest.raises(IntegrityError):
        db.run(lambda conn: conn.execute(text("INSERT INTO items (id, name) VALUES (1, 'b')")))
    assert kinds == [K.INTEGRITY]


def test_statements_that_succeed_report_nothing(tmp_path):
    kinds: list = []
    db = sqlite_database(tmp_path, kinds)
    db.run(lambda conn: conn.execute(text("INSERT INTO items (id, name) VALUES (1, 'a')")))
    db.ping()
    assert kinds == []


def test_a_database_locked_by_another_connection_is_kind_timeout(tmp_path):
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (id INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    # The service's own engine waits 30 s for a lock; this one gives up after 0.1 s.
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    kinds: list = []
    report_errors(engine, kinds.append)
    try:
        with pytest.raises(OperationalError, match="database is locked"), engine.connect() as conn:
            conn.execute(text("SELECT * FROM t"))
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    assert kinds == [K.TIMEOUT]


def test_a_database_file_that_cannot_be_opened_is_kind_connection(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    engine = create_engine(f"sqlite:///{tmp_path / 'file' / 'db.sqlite3'}")
    kinds: list = []
    report_errors(engine, kinds.append)
    with pytest.raises(OperationalError, match="unable to open"), engine.connect():
        pass
    assert kinds == [K.CONNECTION]


# --- MariaDB ------------------------------------------------------------------------------------


def test_a_refused_mysql_connection_is_kind_connection():
    # Nothing listens on a port we just freed; a refused connect fails at once.
    engine = create_engine(f"mysql+pymysql://root@127.0.0.1:{free_port()}/x",
                           connect_args={"connect_timeout": 2}, pool_pre_ping=True)
    kinds: list = []
    report_errors(engine, kinds.append)
    with pytest.raises(OperationalError, match="Can't connect"), engine.connect():
        pass
    assert kinds == [K.CONNECTION]


@pytest.mark.mariadb
def test_a_connection_killed_by_the_server_is_kind_connection(mariadb):
    kinds: list = []
    db = mariadb(kinds)
    killer = create_engine(MYSQL_SERVER_URL)
    try:
        with db.connect() as conn:
            connection_id = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
            with killer.connect() as admin:
                admin.execute(text(f"KILL {int(connection_id)}"))
            with pytest.raises(OperationalError):
                conn.execute(text("SELECT 1"))
    finally:
        killer.dispose()
    assert kinds == [K.CONNECTION]
    db.ping()   # the pool threw the dead connection away


@pytest.mark.mariadb
def test_a_lock_wait_timeout_is_kind_timeout(mariadb):
    kinds: list = []
    db = mariadb(kinds)
    db.run(lambda conn: conn.execute(text("INSERT INTO items (id, name) VALUES (1, 'a')")))
    with db.transaction() as holder:
        holder.execute(text("UPDATE items SET name = 'held' WHERE id = 1"))
        with pytest.raises(OperationalError, match="Lock wait timeout"), db.transaction() as waiter:
            waiter.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
            waiter.execute(text("UPDATE items SET name = 'waited' WHERE id = 1"))
    assert kinds == [K.TIMEOUT]


@pytest.mark.mariadb
def test_a_deadlock_counts_even_when_the_retry_succeeds(mariadb):
    kinds: list = []
    retries: list = []
    db = mariadb(kinds, on_retry=lambda: retries.append(1))
    db.run(lambda conn: conn.execute(text("INSERT INTO items (id, name) VALUES (1, 'a'), (2, 'b')")))
    both_hold_a_row = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def transfer(first: int, second: int) -> None:
        attempts = []

        def work(conn: sqlalchemy.Connection) -> None:
            attempts.append(1)
            conn.execute(text("UPDATE items SET name = 'x' WHERE id = :id"), {"id": first})
            if len(attempts) == 1:
                both_hold_a_row.wait()   # each holds one row and wants the other's: a deadlock
            conn.execute(text("UPDATE items SET name = 'y' WHERE id = :id"), {"id": second})

        try:
            db.run(work)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=transfer, args=pair) for pair in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []                 # the victim was retried and both transactions committed
    assert kinds == [K.DEADLOCK]
    assert len(retries) == 1


# --- a service's /metrics -------------------------------------------------------------------------


def db_errors(app) -> dict[str, float]:
    body = app.test_client().get("/metrics").get_data(as_text=True)
    return {
        sample.labels[c.L_KIND]: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == c.DB_ERRORS.name and sample.labels.get(c.L_SERVICE) == c.FRAUD
    }


def test_a_service_shows_every_kind_at_zero_from_start_and_counts_its_errors(tmp_path):
    app = create_fraud(f"sqlite:///{tmp_path / 'fraud.sqlite3'}")
    assert db_errors(app) == {kind.value: 0.0 for kind in DbErrorKind}

    db = context(app).db
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE assessments"))
    response = app.test_client().post("/assessments", json={
        "customer_id": "cus_dberrors", "kind": "transfer", "amount_minor": 1000, "currency": "EUR",
        "counterparty": "acc_aaaaaaaaaaaaaaaa", "reference": "trf_dberrors"},
        headers=service_headers(c.TRANSACTIONS, c.FRAUD))
    assert response.status_code == 500
    assert db_errors(app) == {**{kind.value: 0.0 for kind in DbErrorKind}, K.OTHER.value: 1.0}
