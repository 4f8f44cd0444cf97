"""`obslab backup` against the real thing: a native lab under traffic backed up, changed, and
restored into a fresh directory, whose state is then read where it lies (the services' databases
through their own stores, the TSDB by a Prometheus of its own); the same round trip on MariaDB at
the database layer (the lab's databases as schemas on the server, transfers running); Prometheus's
admin API snapshot and the file copy, each read back by a second Prometheus."""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy
from sqlalchemy import Column, MetaData, String, Table, insert, select, update

from obslab import conventions as c
from obslab import secrets
from obslab.lab import backup
from obslab.lab.backup import BackupError
from obslab.platform.db import Database
from obslab.services.accounts.ledger import Ledger, MovementKind
from obslab.services.accounts.ledger import metadata as ledger_metadata
from obslab.services.alert_receiver import store as receiver_store
from obslab.services.common import money
from obslab.services.fault_injector import app as injector
from tests.integration.lab import eventually, free_offset, obslab, start_lab
from tests.prometheus_support import scrape_job, start_prometheus
from tests.support import MYSQL_SERVER_URL, drop_mysql_databases, free_port, mysql_reachable

# --- the issue's scenario on a whole native lab -------------------------------------------------

PAGE = {
    "version": "4", "truncatedAlerts": 0, "status": "firing", "receiver": "pager",
    "groupLabels": {"alertname": "BankingServiceDown"},
    "commonLabels": {"alertname": "BankingServiceDown", "severity": "critical", "service": "payments"},
    "commonAnnotations": {}, "externalURL": "http://localhost:9093",
    "alerts": [{"status": "firing",
                "labels": {"alertname": "BankingServiceDown", "severity": "critical", "service": "payments",
                           "team": "core-banking"},
                "annotations": {"summary": "payments is down", "description": ""},
                "startsAt": "2026-11-23T10:15:02.114Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://localhost:9090/graph", "fingerprint": "0123456789abcdef"}],
}


def _operator(lab) -> dict[str, str]:
    """The operator's control token, from the lab's data directory (what `obslab fault` sends)."""
    return {"Authorization": f"Bearer {secrets.control_token(directory=secrets.secrets_dir(lab.data_dir))}"}


def _notify(lab, marker: str) -> None:
    """A notification the alert-receiver stores, posted as the operator (as Alertmanager posts)."""
    body = copy.deepcopy(PAGE)
    body["groupKey"] = f"{{}}:{{marker=\"{marker}\"}}"
    body["alerts"][0]["annotations"]["description"] = marker
    response = requests.post(f"{lab.url(c.ALERT_RECEIVER)}/webhook/pager", json=body, timeout=10,
                             headers=_operator(lab))
    assert response.status_code in (200, 201), response.text


def _restored_notification_markers(data_dir: Path) -> set[str]:
    """What the alert-receiver of the restored directory would show, read through its own store."""
    db = Database(c.ALERT_RECEIVER, receiver_store.metadata, f"sqlite:///{data_dir / 'db' / 'alert-receiver.sqlite3'}")
    try:
        notifications = receiver_store.NotificationStore(db).list(limit=1000)
    finally:
        db.engine.dispose()
    return {alert["description"] for item in notifications for alert in item["alerts"]}


def _restored_audited_faults(data_dir: Path) -> set[str]:
    """The fault injector's audit log in the restored directory, read through its own store."""
    db = Database(c.FAULT_INJECTOR, injector.metadata, f"sqlite:///{data_dir / 'db' / 'fault-injector.sqlite3'}")
    try:
        return {entry["fault_id"] for entry in injector.FaultStore(db, None).audit(1000)}
    finally:
        db.engine.dispose()


def _fault(lab) -> str:
    """A fault set and cleared (two lines in the audit log), through the control plane's API."""
    faults = f"{lab.url(c.FAULT_INJECTOR)}{c.API_PREFIX}/faults"
    response = requests.post(faults, headers=_operator(lab), timeout=10,
                             json={"kind": "latency", "target": c.FRAUD, "latency_ms": 1, "ttl_seconds": 300})
    assert response.status_code == 201, response.text
    fault_id = response.json()["id"]
    assert requests.delete(f"{faults}/{fault_id}", headers=_operator(lab), timeout=10).status_code == 200
    return fault_id


def _balances(sessions: dict[str, requests.Session], api: str) -> dict[str, str]:
    found = {}
    for name, session in sessions.items():
        response = session.get(f"{api}/accounts", timeout=10)
        assert response.status_code == 200, response.text
        found.update({f"{name}/{a['id']}": a["balance"] for a in response.json()})
    return found


def _transfer(session: requests.Session, api: str, source: str, target: str, amount: str) -> None:
    response = session.post(f"{api}/transfers", timeout=30, headers={"Idempotency-Key": uuid.uuid4().hex},
                            json={"from_account": source, "to_account": target, "amount": amount, "currency": "EUR"})
    assert response.status_code == 201, response.text


@pytest.mark.lab
@pytest.mark.serial
@pytest.mark.usefixtures("untraced_client")
def test_a_backup_under_traffic_restores_into_a_fresh_directory_the_money_alerts_audit_and_metrics_of_its_time(
        tmp_path):
    """One lab with the load generator's traffic is backed up, changed and stopped; the archive is
    restored into a fresh directory, whose files are checked while the first lab stops, and then
    started with `up`: its API, alert-receiver and Prometheus answer with what was there at the
    backup."""
    offset = free_offset(16_000)
    archive = tmp_path / "lab.tar.gz"
    restored = tmp_path / "b"
    first = start_lab(tmp_path / "a", offset)
    try:
        sessions = {name: first.login(name) for name in ("alice", "bob")}
        alice_checking = sessions["alice"].get(f"{first.api}/accounts", timeout=10).json()[0]["id"]
        bob_checking = sessions["bob"].get(f"{first.api}/accounts", timeout=10).json()[0]["id"]
        for amount in ("12.34", "0.66", "100.00"):
            _transfer(sessions["alice"], first.api, alice_checking, bob_checking, amount)
        fault_before = _fault(first)
        _notify(first, "before the backup")
        series = f'sum(transaction_requests_total{{type="{c.TransactionType.TRANSFER.value}"}})'
        eventually(lambda: (first.value(series) or 0) >= 3, 60, "the transfers scraped into Prometheus")
        before = time.time()
        time.sleep(1)
        seen_before = first.prometheus("/api/v1/query", query=series, time=before)["result"]
        up_before = first.prometheus("/api/v1/query", query=f'up{{job="{c.ACCOUNTS}"}}', time=before)["result"]
        balances = _balances(sessions, first.api)

        began = time.monotonic()
        made = first.run("backup", "create", "--out", str(archive), "--json", timeout=120)
        backup_seconds = time.monotonic() - began
        assert made.returncode == 0, made.stderr
        summary = json.loads(made.stdout)
        assert summary["ledger"]["sound"] and summary["ledger"]["movements"] > 4, summary
        assert summary["prometheus"]["method"] == "file-copy (running)"
        assert summary["write_pause_ms"] < 5000 and summary["secrets"] == "plaintext"

        # After the backup: money moves, a fault comes and goes, another page arrives.
        _transfer(sessions["alice"], first.api, alice_checking, bob_checking, "7.00")
        assert _balances(sessions, first.api) != balances
        fault_after = _fault(first)
        _notify(first, "after the backup")

        began = time.monotonic()
        done = obslab("backup", "restore", str(archive), "--data-dir", str(restored), "--json",
                      offset=offset, timeout=120)
        restore_seconds = time.monotonic() - began
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["ledger"]["sound"]

        # The lab stops (its books checked) while what was restored is read.
        with ThreadPoolExecutor(1) as pool:
            stopping = pool.submit(first.stop)
            books_db = Database(c.ACCOUNTS, ledger_metadata, f"sqlite:///{restored / 'db' / 'accounts.sqlite3'}")
            try:
                books = Ledger(books_db)
                assert {key: money.to_decimal_string(books.account(key.split("/", 1)[1])["balance_minor"])
                        for key in balances} == balances                      # to the cent, as at the backup
                assert books.invariant_violations() == []
            finally:
                books_db.engine.dispose()
            ledger = backup.sqlite_ledger_summary(restored / "db" / "accounts.sqlite3")
            assert ledger["sound"] and ledger["sum_minor"] == 0 and ledger["half_movements"] == 0, ledger
            markers = _restored_notification_markers(restored)
            assert "before the backup" in markers and "after the backup" not in markers
            audited = _restored_audited_faults(restored)
            assert fault_before in audited and fault_after not in audited
            stopping.result(timeout=120)

        # `up` on the restored directory, as a person would: what it serves is what the lab held.
        second = start_lab(restored, offset, "--no-traffic")
        try:
            again = {name: second.login(name) for name in ("alice", "bob")}
            assert _balances(again, second.api) == balances                       # to the cent
            assert second.prometheus("/api/v1/query", query=series, time=before)["result"] == seen_before
            assert second.prometheus("/api/v1/query", query=f'up{{job="{c.ACCOUNTS}"}}',
                                     time=before)["result"] == up_before
            assert [sample["value"][1] for sample in up_before] == ["1"]
        finally:
            second.stop()
        print(f"backup {summary['size_bytes'] / 1e6:.1f} MB, written in {backup_seconds:.1f} s "
              f"(pause {summary['write_pause_ms']} ms); restored in {restore_seconds:.1f} s")
    finally:
        first.run("down")
    # Across services, one instant: every transfer transactions calls completed is in the ledger.
    books = sqlite3.connect(restored / "db" / "accounts.sqlite3")
    records = sqlite3.connect(restored / "db" / "transactions.sqlite3")
    try:
        moved = {row[0] for row in books.execute("SELECT id FROM movements")}
        completed = {row[0] for row in records.execute("SELECT id FROM transfers WHERE status = 'completed'")}
    finally:
        books.close()
        records.close()
    assert completed and completed <= moved, sorted(completed - moved)[:5]


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

