"""`obslab backup` against the real databases: the round trip on MariaDB at the database layer
(the lab's databases as schemas on the server, transfers running); Prometheus's admin API
snapshot and the file copy, each read back by a second Prometheus. The whole-lab scenario runs on
the native lab of tests/integration/test_native_lab.py (tests/integration/backup_scenario.py)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import sqlalchemy
from sqlalchemy import Column, MetaData, String, Table, insert, select, update

from obslab import conventions as c
from obslab.lab import backup
from obslab.lab.backup import BackupError
from obslab.platform.db import Database
from obslab.services.accounts.ledger import Ledger, MovementKind
from obslab.services.accounts.ledger import metadata as ledger_metadata
from obslab.services.common import money
from tests.prometheus_support import scrape_job, start_prometheus
from tests.support import MYSQL_SERVER_URL, drop_mysql_databases, free_port, mysql_reachable

# --- MariaDB: the same round trip at the database layer ------------------------------------------

probe_metadata = MetaData()
probes = Table("transfers", probe_metadata, Column("id", String(64), primary_key=True),
               Column("status", String(16), nullable=False))


@pytest.fixture
def mariadb(monkeypatch):
    """Two uniquely named families of schemas (a lab's and the one it is restored as), dropped after."""
    if not mysql_reachable():
        pytest.fail(f"MariaDB is not reachable at {MYSQL_SERVER_URL}; run `obslab doctor --install --mariadb`")
    run = uuid.uuid4().hex[:8]
    server = MYSQL_SERVER_URL.rstrip("/")
    prefixes = {"source": f"obslabtest_{run}_src", "target": f"obslabtest_{run}_dst"}
    engine = sqlalchemy.create_engine(MYSQL_SERVER_URL)

    def leftovers() -> set[str]:
        with engine.connect() as conn:
            return {row[0] for row in conn.execute(sqlalchemy.text(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'obslab\\_re%'"))}

    staged_before = leftovers()

    def use(which: str) -> None:
        monkeypatch.setenv("OBSLAB_DB_URL", f"{server}/{prefixes[which]}")

    yield use
    drop_mysql_databases([f"{prefix}_{comp.name.replace('-', '_')}" for prefix in prefixes.values()
                          for comp in backup.database_components()])
    assert leftovers() == staged_before, "a restore left staging schemas behind"
    engine.dispose()


@pytest.mark.mariadb
def test_mariadb_schemas_are_backed_up_in_one_snapshot_under_transfers_and_restored_as_other_schemas(
        mariadb, tmp_path, monkeypatch):
    mariadb("source")
    ledger_db = Database(c.ACCOUNTS, ledger_metadata)
    records_db = Database(c.TRANSACTIONS, probe_metadata)
    ledger = Ledger(ledger_db)
    cash = ledger.ensure_system_account(money.SYSTEM_ACCOUNT_CASH, "EUR")
    owners = {}
    for n in range(6):
        account = ledger.open_account(f"cus_{n}", "checking", "EUR")["id"]
        ledger.apply(f"seed-{n}", MovementKind.DEPOSIT, cash, account, 100_000, "EUR", None)
        owners[account] = f"cus_{n}"
    busy, witnesses = list(owners)[:4], list(owners)[4:]
    ledger.apply("witness-1", MovementKind.TRANSFER, witnesses[0], witnesses[1], 1234, "EUR", owners[witnesses[0]])
    stop = threading.Event()
    errors: list[BaseException] = []

    def traffic(worker: int) -> None:
        n = 0
        try:
            while not stop.is_set():
                n += 1
                transfer_id = f"trf_{worker}_{n}"
                records_db.run(lambda conn: conn.execute(insert(probes).values(id=transfer_id, status="pending")))
                source, target = busy[(n + worker) % 4], busy[(n + worker + 1) % 4]
                ledger.apply(transfer_id, MovementKind.TRANSFER, source, target, 1 + n % 7, "EUR", owners[source])
                records_db.run(lambda conn: conn.execute(
                    update(probes).where(probes.c.id == transfer_id).values(status="completed")))
        except BaseException as exc:   # noqa: BLE001 - reported by the test
            errors.append(exc)

    workers = [threading.Thread(target=traffic, args=(w,)) for w in range(3)]
    for worker in workers:
        worker.start()
    data = tmp_path / "lab"
    data.mkdir()
    try:
        time.sleep(0.5)
        witness_balances = {a: ledger.account(a)["balance_minor"] for a in witnesses}
        result = backup.create(data)
        ledger.apply("witness-2", MovementKind.TRANSFER, witnesses[0], witnesses[1], 99, "EUR", owners[witnesses[0]])
        time.sleep(0.3)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert not errors, errors
    with ledger_db.connect() as conn:
        movements_after = len(conn.execute(sqlalchemy.text("SELECT id FROM movements")).all())
    ledger_db.engine.dispose()
    records_db.engine.dispose()
    info = result.manifest["databases"]
    assert result.manifest["database_backend"] == "mysql+sqlite"        # the trace sink is SQLite natively
    assert info[c.ACCOUNTS]["backend"] == "mysql" and info[c.ACCOUNTS]["ledger"]["sound"]
    assert info[c.PAYMENTS]["member"] is None
    backed_up = info[c.ACCOUNTS]["ledger"]["movements"]
    assert 6 + 1 < backed_up < movements_after, "the backup should have been taken under traffic"

    mariadb("target")
    restored = backup.restore(result.archive, tmp_path / "restored")
    assert restored.ledger["sound"] and restored.ledger["movements"] == backed_up
    books_db = Database(c.ACCOUNTS, ledger_metadata)
    books = Ledger(books_db)
    try:
        assert books.invariant_violations() == []
        assert {a: books.account(a)["balance_minor"] for a in witnesses} == witness_balances
        restored_records = Database(c.TRANSACTIONS, probe_metadata)
        with restored_records.connect() as conn:
            completed = set(conn.execute(select(probes.c.id).where(probes.c.status == "completed")).scalars())
        restored_records.engine.dispose()
        with books_db.connect() as conn:
            moved = set(conn.execute(sqlalchemy.text("SELECT id FROM movements")).scalars())
        assert completed and completed <= moved, sorted(completed - moved)[:5]
        # The restored schemas are in use (this pool's connections): even --force refuses.
        with pytest.raises(BackupError, match="session.* use MySQL schema"):
            backup.restore(result.archive, tmp_path / "again", force=True)
    finally:
        books_db.engine.dispose()
    with pytest.raises(BackupError, match="holds .* tables already; restore with --force"):
        backup.restore(result.archive, tmp_path / "again")
    assert not (tmp_path / "again").exists()

    # --force over a stopped lab whose tables cannot be swapped in: its files are put back as they were,
    # and its tables stay (the files are committed first, the tables second).
    lab = tmp_path / "again"
    (lab / "run").mkdir(parents=True)
    (lab / "run" / "lab.json").write_text("{}")
    (lab / "logs").mkdir()
    (lab / "logs" / "accounts.log").write_text("kept")
    files = sorted(str(path.relative_to(lab)) for path in lab.rglob("*"))
    rename_all = backup._rename_all

    def failing(_cursor, _moves):
        import pymysql
        raise pymysql.err.OperationalError(2013, "Lost connection to server during query")

    monkeypatch.setattr(backup, "_rename_all", failing)
    with pytest.raises(BackupError, match="moving the restored tables into their MySQL schemas failed: .*Lost conn"):
        backup.restore(result.archive, lab, force=True)
    monkeypatch.setattr(backup, "_rename_all", rename_all)
    assert sorted(str(path.relative_to(lab)) for path in lab.rglob("*")) == files
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(("again", ".again"))) == ["again"]
    unchanged = Database(c.ACCOUNTS, ledger_metadata)
    try:
        assert Ledger(unchanged).invariant_violations() == []
        with unchanged.connect() as conn:
            assert len(conn.execute(sqlalchemy.text("SELECT id FROM movements")).all()) == backed_up
    finally:
        unchanged.engine.dispose()

    again = backup.restore(result.archive, lab, force=True)
    assert again.ledger["movements"] == backed_up
    assert again.replaced is not None and (lab / "logs" / "accounts.log").read_text() == "kept"
    # The tables it replaced are kept, in schemas it names (--force keeps the replaced state).
    assert again.replaced_schemas and all(name.startswith("obslab_replaced_") for name in again.replaced_schemas)
    engine = sqlalchemy.create_engine(MYSQL_SERVER_URL)
    try:
        with engine.connect() as conn:
            kept = {row[0]: row[1] for row in conn.execute(sqlalchemy.text(
                "SELECT TABLE_SCHEMA, COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE "
                "'obslab\\_replaced\\_%' GROUP BY TABLE_SCHEMA"))}
            assert set(again.replaced_schemas) <= set(kept)
            ledgers = [name for name in again.replaced_schemas if conn.execute(sqlalchemy.text(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = :s AND TABLE_NAME = 'movements'"),
                {"s": name}).scalar()]
            assert len(ledgers) == 1
            assert conn.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM `{ledgers[0]}`.movements")).scalar() == backed_up
    finally:
        engine.dispose()
        drop_mysql_databases(again.replaced_schemas)


# --- Prometheus: the admin API snapshot, and the file copy ----------------------------------------


@pytest.mark.prometheus
def test_prometheus_is_captured_by_its_admin_api_or_by_a_file_copy_and_both_answer_for_the_past(tmp_path):
    port = free_port()
    data = tmp_path / "lab"
    tsdb = data / backup.PROMETHEUS_TSDB
    source = start_prometheus(tmp_path / "source", data_dir=tsdb, port=port, scrape_interval="1s",
                              scrape_configs=[scrape_job("self", f"127.0.0.1:{port}", "1s")],
                              extra_args=["--web.enable-admin-api"])
    try:
        source.wait_for(lambda: source.scalar('count(up{job="self"})'), 30, "a first scrape")
        before = time.time()
        time.sleep(1.5)
        snapshot = backup.capture_prometheus(data, tmp_path / "via-api", source.url)
        copied = backup.copy_tsdb(tsdb, tmp_path / "via-files")
    finally:
        source.stop()
    assert snapshot["method"] == "snapshot-api" and snapshot["blocks"] >= 1 and snapshot["version"]
    assert not list((tsdb / "snapshots").iterdir()), "the snapshot must not stay in the lab's TSDB"
    assert copied["wal_files"] >= 1
    for name, directory in (("api", tmp_path / "via-api" / backup.DATA / backup.PROMETHEUS_TSDB),
                            ("files", tmp_path / "via-files")):
        replica = start_prometheus(tmp_path / f"replica-{name}", data_dir=directory)
        try:
            assert replica.scalar('up{job="self"}', at=before) == 1, name
        finally:
            replica.stop()

