"""`obslab backup` without a lab: real SQLite databases of the services' own tables in a temporary
data directory, written to while backups are taken; archives broken every way they break;
restores that must change nothing when they refuse; retention and the schedule."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import socketserver
import sqlite3
import tarfile
import threading
import time
from pathlib import Path
from xmlrpc.server import SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler

import pytest

from obslab import secrets, settings, topology
from obslab.cli import main
from obslab.lab import backup
from obslab.lab.backup import BackupError
from obslab.platform.db import Database
from obslab.services.accounts.ledger import Ledger, MovementKind
from obslab.services.accounts.ledger import metadata as ledger_metadata
from obslab.services.common import money

BLOCK = "01JEXAMPLE0000000000000000"


# --- a lab's data directory, without the lab ---------------------------------------------------


class Bank:
    """The accounts service's ledger on a SQLite file, with customers who hold money."""

    def __init__(self, path: Path, customers: int = 6) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Database("accounts", ledger_metadata, f"sqlite:///{path}")
        self.ledger = Ledger(self.db)
        cash = self.ledger.ensure_system_account(money.SYSTEM_ACCOUNT_CASH, "EUR")
        self.owners: dict[str, str] = {}
        for n in range(customers):
            owner = f"cus_{n}"
            account = self.ledger.open_account(owner, "checking", "EUR")["id"]
            self.ledger.apply(f"seed-{n}", MovementKind.DEPOSIT, cash, account, 100_000, "EUR", None)
            self.owners[account] = owner
        self.counter = 0

    def transfer(self, source: str, target: str, amount: int, movement_id: str | None = None) -> str:
        self.counter += 1
        movement_id = movement_id or f"trf_{threading.get_ident()}_{self.counter}"
        self.ledger.apply(movement_id, MovementKind.TRANSFER, source, target, amount, "EUR", self.owners[source])
        return movement_id

    def balances(self) -> dict[str, int]:
        return {account: self.ledger.account(account)["balance_minor"] for account in self.owners}

    def close(self) -> None:
        self.db.engine.dispose()


def _sqlite(path: Path, *statements: str, rows: list[tuple] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for statement in statements:
        conn.execute(statement)
    if rows:
        conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
    conn.close()


@pytest.fixture
def lab_dir(tmp_path):
    return make_lab(tmp_path)


def make_lab(base: Path) -> tuple[Path, dict[str, bytes], dict[str, bytes]]:
    """A stopped lab's data directory: databases, TSDB, secrets, models, reports, and things that
    are not state (logs, generated configuration, Prometheus' scratch files)."""
    data = base / "lab"
    bank = Bank(data / "db" / "accounts.sqlite3")
    accounts = list(bank.owners)
    for n in range(20):
        bank.transfer(accounts[n % 6], accounts[(n + 1) % 6], 100 + n)
    bank.close()
    _sqlite(data / "db" / "fault-injector.sqlite3", "CREATE TABLE t (id INTEGER, action TEXT)",
            rows=[(1, "set"), (2, "cleared")])
    _sqlite(data / "db" / "alert-receiver.sqlite3", "CREATE TABLE t (id INTEGER, receiver TEXT)",
            rows=[(1, "paging")])
    _sqlite(data / "traces" / "spans.sqlite3", "CREATE TABLE t (id INTEGER, span TEXT)", rows=[(1, "root")])
    secrets.init_secrets(data / "run" / "secrets", ["accounts", "gateway"])
    files = {
        "prometheus/data/wal/00000000": os.urandom(3000),
        "prometheus/data/wal/checkpoint.00000001/00000000": b"checkpoint",
        f"prometheus/data/{BLOCK}/meta.json": b'{"ulid": "x"}',
        f"prometheus/data/{BLOCK}/index": b"index",
        f"prometheus/data/{BLOCK}/chunks/000001": os.urandom(2000),
        "alertmanager/data/silences": b"silence",
        "ml/ddos/model.joblib": os.urandom(1000),
        "drills/reports/run1.json": b'{"passed": true}',
        "drills/history.jsonl": b'{"run_id": "run1"}\n',
        "history/incidents.json": b"[]",
        "run/seeded": b"1",
    }
    not_state = {
        "prometheus/data/chunks_head/000001": b"mmapped",
        "prometheus/data/queries.active": b"",
        "prometheus/data/wal/checkpoint.00000002.tmp/00000000": b"half a checkpoint",
        "prometheus/prometheus.yml": b"generated",
        "history/openmetrics/x.txt": b"scratch",
        "logs/accounts.log": b"log line",
        "run/lab.json": b"{}",
        "bench/nab/x.csv": b"1",
        "ml/ddos/.model.joblib.partial": b"half a model being saved",   # written, then renamed into place
        "drills/reports/run2.4242.tmp": b"half a report",
    }
    for relative, content in {**files, **not_state}.items():
        (data / relative).parent.mkdir(parents=True, exist_ok=True)
        (data / relative).write_bytes(content)
    return data, files, not_state


def _rows(path: Path, table: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    finally:
        conn.close()


def _tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` and its SHA-256: what 'changes nothing' compares."""
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# --- the round trip ----------------------------------------------------------------------------


def test_a_round_trip_restores_every_piece_of_state_and_nothing_that_is_not(lab_dir, tmp_path):
    data, files, not_state = lab_dir
    said: list[str] = []
    result = backup.create(data, say=said.append)

    assert result.archive.parent == data / "backups" and result.archive.name.startswith("obslab-backup-")
    assert (result.archive.stat().st_mode & 0o777) == 0o600
    manifest = result.manifest
    assert manifest["format"] == backup.FORMAT and manifest["secrets"] == "plaintext"
    assert manifest["created_at"].endswith("Z") and manifest["obslab_version"]
    assert manifest["database_backend"] == "sqlite" and "accounts" in manifest["components"]
    assert manifest["databases"]["accounts"]["ledger"] == {
        "accounts": 7, "movements": 26, "sum_minor": 0, "balance_mismatches": 0, "half_movements": 0, "sound": True}
    assert manifest["databases"]["payments"]["member"] is None          # never started: nothing to copy
    assert any("unencrypted" in line for line in said) and any("writes paused" in line for line in said)
    with tarfile.open(result.archive) as tar:
        names = tar.getnames()
    assert names[0] == backup.MANIFEST_NAME
    assert sorted(names[1:]) == sorted(m["path"] for m in manifest["members"])

    assert backup.verify(result.archive)["created_at"] == manifest["created_at"]
    target = tmp_path / "fresh" / "lab"
    restored = backup.restore(result.archive, target)
    assert restored.ledger["sound"] and restored.replaced is None
    for relative, content in files.items():
        assert (target / relative).read_bytes() == content, relative
    for relative in not_state:
        assert not (target / relative).exists(), relative
    assert _tree(target / "run" / "secrets") == _tree(data / "run" / "secrets")
    for database, table in (("db/accounts.sqlite3", "accounts"), ("db/accounts.sqlite3", "entries"),
                            ("db/fault-injector.sqlite3", "t"), ("traces/spans.sqlite3", "t")):
        assert _rows(target / database, table) == _rows(data / database, table)
    assert not list((target / "db").glob("*-wal"))               # each copy is one self-contained file
    assert (target.stat().st_mode & 0o777) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["lab"]   # no staging directory left behind


def test_a_component_that_topology_gives_a_database_later_is_backed_up_without_a_list_to_extend(
        lab_dir, monkeypatch):
    data, _files, _not_state = lab_dir
    newcomer = topology.Component("ledger-archive", "banking", "/ready", database=True)
    monkeypatch.setattr(topology, "ALL", (*topology.ALL, newcomer))
    _sqlite(data / "db" / "ledger-archive.sqlite3", "CREATE TABLE t (id INTEGER, what TEXT)", rows=[(1, "kept")])
    result = backup.create(data)
    assert result.manifest["databases"]["ledger-archive"]["member"] == "data/db/ledger-archive.sqlite3"
    assert "data/db/ledger-archive.sqlite3" in {m["path"] for m in result.manifest["members"]}
    assert {comp.name for comp in backup.database_components()} >= {
        "accounts", "transactions", "alert-receiver", "fault-injector", "trace-sink", "ledger-archive"}


def test_unknown_top_level_state_is_reported_not_silently_dropped(lab_dir):
    data, _files, _not_state = lab_dir
    (data / "aggregates").mkdir()
    (data / "aggregates" / "kpis.json").write_text("{}")
    result = backup.create(data)
    assert [w for w in result.warnings if "aggregates" in w and "not backed up" in w]


def test_the_ledger_of_a_backup_under_transfers_sums_to_zero_and_matches_other_services_at_one_instant(tmp_path):
    """Transfers run as the services run them: transactions records a transfer pending, the ledger
    (accounts) moves the money, transactions marks it completed. Each database taken at its own
    moment could show a transfer completed whose movement is not in the ledger; one instant cannot."""
    data = tmp_path / "lab"
    bank = Bank(data / "db" / "accounts.sqlite3")
    # Bulk in the ledger's file, so that copying it takes a while (what a per-database copy gets wrong).
    padding = sqlite3.connect(data / "db" / "accounts.sqlite3")
    padding.execute("CREATE TABLE padding (blob BLOB)")
    padding.executemany("INSERT INTO padding VALUES (?)", [(os.urandom(4096),) for _ in range(2500)])
    padding.commit()
    padding.close()
    records = data / "db" / "transactions.sqlite3"
    _sqlite(records, "CREATE TABLE transfers (id TEXT PRIMARY KEY, status TEXT)")
    accounts = list(bank.owners)
    stop = threading.Event()
    errors: list[BaseException] = []
    completed = [0, 0, 0]   # transfers each worker completed

    def traffic(worker: int) -> None:
        conn = sqlite3.connect(records, timeout=30, isolation_level=None)
        n = 0
        try:
            while not stop.is_set():
                n += 1
                transfer_id = f"trf_{worker}_{n}"
                conn.execute("INSERT INTO transfers VALUES (?, 'pending')", (transfer_id,))
                source, target = accounts[(n + worker) % 6], accounts[(n + worker + 1) % 6]
                bank.transfer(source, target, 1 + n % 7, movement_id=transfer_id)
                conn.execute("UPDATE transfers SET status = 'completed' WHERE id = ?", (transfer_id,))
                completed[worker] += 1
        except BaseException as exc:   # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            conn.close()

    def completed_at_least(count: int) -> None:
        deadline = time.monotonic() + 30
        while sum(completed) < count:
            assert not errors and time.monotonic() < deadline, (errors, f"{sum(completed)} of {count} transfers")
            time.sleep(0.005)

    workers = [threading.Thread(target=traffic, args=(w,)) for w in range(3)]
    for worker in workers:
        worker.start()
    results = []
    try:
        completed_at_least(30)                       # the traffic is flowing: the backup is taken under it
        for _ in range(2):
            results.append(backup.create(data))
            completed_at_least(sum(completed) + 20)  # and it goes on between (and after) the backups
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        bank.close()
    assert not errors, errors
    for n, result in enumerate(results):
        target = tmp_path / f"restored-{n}"
        restored = backup.restore(result.archive, target)
        assert restored.ledger["sound"], restored.ledger
        assert restored.ledger["movements"] > 6, "the backup should have been taken under traffic"
        completed = {row[0] for row in _rows(target / "db" / "transactions.sqlite3", "transfers") if row[1] == "completed"}
        moved = {row[0] for row in _rows(target / "db" / "accounts.sqlite3", "movements")}
        assert completed, "no transfer completed before the backup"
        assert completed <= moved, f"completed in transactions, not in the ledger: {sorted(completed - moved)[:5]}"
        assert result.manifest["consistency"]["write_pause_ms"] < 5000


def test_a_database_locked_by_a_writer_fails_the_backup_quickly_and_the_others_stay_writable(lab_dir):
    data, _files, _not_state = lab_dir
    books = data / "db" / "accounts.sqlite3"      # locked by every try before the busy one is reached
    probe = sqlite3.connect(books, isolation_level=None)
    probe.execute("CREATE TABLE probe (n INTEGER)")
    held, release = threading.Event(), threading.Event()

    def hold_the_audit_log() -> None:   # a transaction left open in the fault injector's database
        conn = sqlite3.connect(data / "db" / "fault-injector.sqlite3", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait(30)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=hold_the_audit_log)
    holder.start()
    assert held.wait(10)
    outcome: dict[str, object] = {}

    def back_up() -> None:
        began = time.monotonic()
        try:
            backup.create(data)
        except BackupError as exc:
            outcome["error"] = str(exc)
        outcome["seconds"] = time.monotonic() - began

    runner = threading.Thread(target=back_up)
    slowest, writes = 0.0, 0
    try:
        runner.start()
        probe.execute("PRAGMA busy_timeout=2000")
        while runner.is_alive():
            began = time.monotonic()
            probe.execute("INSERT INTO probe VALUES (?)", (writes,))
            slowest, writes = max(slowest, time.monotonic() - began), writes + 1
            time.sleep(0.005)
    finally:
        runner.join(30)
        release.set()
        holder.join(10)
        probe.close()
    error = str(outcome.get("error"))
    assert error.startswith("could not pause the lab's writes within 5 s: fault-injector's database "), error
    assert "\n" not in error and "nothing was written" in error
    assert outcome["seconds"] < backup.FREEZE_DEADLINE_SECONDS + 3
    assert writes > 50 and slowest < 1.0, (writes, slowest)   # never held up beyond one lock's wait
    assert not backup.archives(data / "backups") and not list((data / "backups").glob(".staging-*"))


def test_a_running_labs_database_not_in_wal_mode_is_refused_and_a_stopped_ones_copied(fake_running_lab):
    data = fake_running_lab
    conn = sqlite3.connect(data / "db" / "fault-injector.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    with pytest.raises(BackupError, match="fault-injector's database .* is in journal mode 'delete', not WAL: .*"
                                          "stop the lab"):
        backup.create(data)


def test_a_stopped_labs_database_not_in_wal_mode_is_copied(lab_dir):
    data, _files, _not_state = lab_dir
    conn = sqlite3.connect(data / "db" / "fault-injector.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    assert backup.create(data).manifest["databases"]["fault-injector"]["member"]


def test_too_little_free_space_stops_a_backup_and_a_restore_with_one_line(lab_dir, good_archive, tmp_path,
                                                                          monkeypatch, capsys):
    data, _files, _not_state = lab_dir
    usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: usage(path)._replace(free=backup.SPACE_RESERVE_BYTES + 10_000))
    assert main(["backup", "create", "--data-dir", str(data)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "not enough free space in" in error, error
    assert "the staging copy and the archive need about" in error
    assert [p.name for p in (data / "backups").iterdir()] == [".lock"]
    with pytest.raises(BackupError, match="not enough free space .* the unpacked backup need"):
        backup.restore(good_archive, tmp_path / "fresh" / "lab")
    assert not (tmp_path / "fresh").exists()


# --- broken archives: one line, and nothing changes ----------------------------------------------


def _members(archive: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(archive) as tar:
        return [(info, tar.extractfile(info).read()) for info in tar.getmembers()]


def _rewrite(archive: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for info, content in members:
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def _truncate(archive: Path) -> None:
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 6 // 10])


def _flip_byte(archive: Path) -> None:
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    archive.write_bytes(bytes(raw))


def _extra_member(archive: Path) -> None:
    members = _members(archive)
    _rewrite(archive, [*members, (tarfile.TarInfo("data/db/intruder.sqlite3"), b"not ours")])


def _missing_member(archive: Path) -> None:
    members = _members(archive)
    _rewrite(archive, [m for m in members if m[0].name != "data/run/seeded"])


def _changed_member(archive: Path) -> None:
    members = _members(archive)
    changed = [(info, content if info.name != "data/drills/history.jsonl" else content.replace(b"run1", b"run2"))
               for info, content in members]
    _rewrite(archive, changed)


def _changed_manifest_digest(archive: Path) -> None:
    members = _members(archive)
    manifest = json.loads(members[0][1])
    manifest["members"][0]["sha256"] = "0" * 64
    _rewrite(archive, [(members[0][0], json.dumps(manifest).encode()), *members[1:]])


def _consistent(archive: Path, change, extra: tuple[tuple[str, bytes], ...] = ()) -> None:
    """Rewrite the archive with its manifest changed and members added, every digest matching:
    what someone who means to change it (not mere damage) writes."""
    members = _members(archive)
    manifest = json.loads(members[0][1])
    for name, content in extra:
        manifest["members"].append({"path": name, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()})
    change(manifest)
    _rewrite(archive, [(members[0][0], json.dumps(manifest).encode()), *members[1:],
                       *((tarfile.TarInfo(name), content) for name, content in extra)])


def _outside_member(archive: Path) -> None:
    _consistent(archive, lambda manifest: None, extra=(("data/run/supervisord.conf", b"[program:x]"),))


def _database_not_a_member(archive: Path) -> None:
    def change(manifest: dict) -> None:
        manifest["databases"]["accounts"]["member"] = "data/db/other.sqlite3"
    _consistent(archive, change)


def _no_created_at(archive: Path) -> None:
    _consistent(archive, lambda manifest: manifest.pop("created_at"))


def _trailing_garbage(archive: Path) -> None:
    with archive.open("ab") as out:
        out.write(b"appended later")


def _not_a_backup(archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("etc/passwd"), io.BytesIO(b""))


BROKEN = {
    "truncated": (_truncate, "truncated"),
    # Damage shows as what it is (gzip's CRC), whatever member it hit first.
    "flipped byte": (_flip_byte, r": corrupt \(.+\); nothing was changed$"),
    "extra member": (_extra_member, "data/db/intruder.sqlite3 is not in the manifest"),
    "missing member": (_missing_member, "missing, e.g. data/run/seeded"),
    "changed member": (_changed_member, "data/drills/history.jsonl does not match its SHA-256"),
    "changed digest": (_changed_manifest_digest, "does not match its SHA-256"),
    "trailing garbage": (_trailing_garbage, "corrupt"),
    "not a backup": (_not_a_backup, "not an obslab backup"),
    "member outside the state": (_outside_member, "'data/run/supervisord.conf' is outside the state a backup holds"),
    "database not a member": (_database_not_a_member, "accounts's database is data/db/other.sqlite3, which is not "
                                                      "among its members"),
    "no created_at": (_no_created_at, "manifest.json has no valid 'created_at'"),
}


@pytest.fixture(scope="module")
def good_archive(tmp_path_factory):
    """One backup of a small lab, copied by each test that breaks it."""
    data, _files, _not_state = make_lab(tmp_path_factory.mktemp("backup"))
    return backup.create(data).archive


@pytest.mark.parametrize("damage", list(BROKEN), ids=list(BROKEN))
def test_a_broken_archive_is_refused_with_one_line_and_nothing_changes(damage, good_archive, tmp_path, capsys):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(good_archive.read_bytes())
    breaker, message = BROKEN[damage]
    breaker(archive)

    with pytest.raises(BackupError, match=message):
        backup.verify(archive)
    assert main(["backup", "verify", str(archive)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and error.startswith("obslab: error: ")

    fresh = tmp_path / "fresh"
    with pytest.raises(BackupError):
        backup.restore(archive, fresh)
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.tar.gz"]   # no staging left behind

    stopped = tmp_path / "stopped-lab"
    (stopped / "db").mkdir(parents=True)
    (stopped / "run").mkdir()
    (stopped / "run" / "lab.json").write_text("{}")
    (stopped / "db" / "accounts.sqlite3").write_bytes(b"the current books")
    (stopped / "logs").mkdir()
    (stopped / "logs" / "accounts.log").write_text("a log")
    before = _tree(stopped)
    with pytest.raises(BackupError):
        backup.restore(archive, stopped, force=True)
    assert _tree(stopped) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.tar.gz", "stopped-lab"]


DUMPED = [
    backup._SESSION_MODE,
    "SET FOREIGN_KEY_CHECKS=0",
    "CREATE TABLE `accounts` (   `id` varchar(64) NOT NULL,   `balance_minor` bigint(20) NOT NULL DEFAULT 0,   "
    "`rate` decimal(9,4) DEFAULT 0.0500,   `note` text DEFAULT 'a; DROP -- /* x.y */ SELECT',   PRIMARY KEY (`id`),   "
    "KEY `ix_owner` (`owner_id`),   CONSTRAINT `fk` FOREIGN KEY (`x`) REFERENCES `owners` (`id`),   "
    "CONSTRAINT `ck` CHECK (`balance_minor` >= 0) ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
    "INSERT INTO `accounts` (`id`, `balance_minor`, `note`) VALUES ('a\\'b',-5,NULL),('c',1.5e0,'it''s'),"
    "('d',12.34,'\\0 ); DROP TABLE x; --'),('e',1E+2,_binary'\\0')",
]
REFUSED = {
    "DROP DATABASE `obslab_accounts`": "other than SET, CREATE TABLE and INSERT INTO",
    "SET GLOBAL general_log = 1": "other than SET, CREATE TABLE and INSERT INTO",
    "GRANT ALL ON *.* TO `x`": "other than SET, CREATE TABLE and INSERT INTO",
    "CREATE TABLE `mysql`.`user` (`x` int) ENGINE=InnoDB": "other than SET, CREATE TABLE and INSERT INTO",
    "CREATE TABLE `t` (`x` int) ENGINE=InnoDB SELECT * FROM `mysql`.`user`": "with 'SELECT'",
    "CREATE TABLE `t` (`x` int) ENGINE=InnoDB DATA DIRECTORY='/var/lib'": "with 'DIRECTORY'",
    "CREATE TABLE `t` (`x` int) ENGINE=FEDERATED CONNECTION='mysql://h/db/t'": "with 'CONNECTION'",
    "CREATE TABLE `t` (`x` int) ENGINE=MyISAM": "not of an InnoDB table",
    "CREATE TABLE `t` (`x` int /*!50000 , `y` int */) ENGINE=InnoDB": "with '/*'",
    "CREATE TABLE `t` (`x` int REFERENCES `mysql`.`user` (`x`)) ENGINE=InnoDB": "with a name qualified by a schema",
    "CREATE TABLE `t` (`x` int REFERENCES mysql.user (`x`)) ENGINE=InnoDB": "with a name qualified by a schema",
    "INSERT INTO `mysql`.`user` (`x`) VALUES (1)": "an INSERT that is not",
    "INSERT INTO `t` (`x`) VALUES ((SELECT authentication_string FROM mysql.user LIMIT 1))": "an INSERT that is not",
    "INSERT INTO `t` (`x`) VALUES (1) ON DUPLICATE KEY UPDATE `x`=2": "an INSERT that is not",
    "INSERT INTO `t` (`x`) VALUES ('unterminated)": "an INSERT that is not",
    "INSERT INTO `t` (`x`) VALUES (1); DROP TABLE `t`": "an INSERT that is not",
}


def test_a_mysql_dump_is_loaded_only_in_the_shapes_the_dumper_writes():
    for statement in DUMPED:
        backup.check_statement(statement)
    for statement, why in REFUSED.items():
        with pytest.raises(ValueError, match=re.escape(why)):
            backup.check_statement(statement)


def test_a_changed_mysql_dump_is_refused_before_its_statement_runs(tmp_path, monkeypatch):
    executed: list[str] = []

    class Cursor:
        def __enter__(self):
            return self

        def __exit__(self, *_exc):
            return False

        def execute(self, statement: str) -> None:
            executed.append(statement)

    class Connection:
        def cursor(self) -> Cursor:
            return Cursor()

        def close(self) -> None:
            pass

    monkeypatch.setattr(backup, "_mysql_connect", lambda _url, **_extra: Connection())
    dump = tmp_path / "accounts.sql"
    dump.write_text("-- obslab backup of schema obslab_accounts: one statement per line\n"
                    + "".join(f"{statement};\n" for statement in DUMPED[:3])
                    + "DROP DATABASE `obslab_accounts`;\n" + DUMPED[3] + ";\n")
    with pytest.raises(BackupError, match=r"^accounts.sql line 5: a statement other than SET, CREATE TABLE and "
                                          r"INSERT INTO .*which obslab's dump never writes: refusing the archive$"):
        backup.load_schema(dump, None, "obslab_restore_x_0")
    assert executed[-1].startswith("CREATE TABLE `accounts`")   # the lines before ran (in the staging schema)
    assert not [statement for statement in executed if statement.startswith(("DROP", "INSERT"))]


def test_a_missing_archive_is_one_line(tmp_path, capsys):
    assert main(["backup", "verify", str(tmp_path / "nope.tar.gz")]) == 2
    assert "no such file" in capsys.readouterr().err


# --- restoring over a lab ----------------------------------------------------------------------


class _UnixXmlRpcServer(socketserver.UnixStreamServer, SimpleXMLRPCDispatcher):
    def __init__(self, path: str) -> None:
        SimpleXMLRPCDispatcher.__init__(self, allow_none=True, encoding=None)
        self.logRequests = False
        socketserver.UnixStreamServer.__init__(self, path, _QuietHandler)


class _QuietHandler(SimpleXMLRPCRequestHandler):
    disable_nagle_algorithm = False   # a unix socket has no TCP options
    def address_string(self) -> str:
        return "unix"

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def fake_running_lab(lab_dir):
    """A supervisord stand-in on the lab's control socket: what NativeLab.running() asks."""
    data, _files, _not_state = lab_dir
    server = _UnixXmlRpcServer(str(data / "run" / "supervisor.sock"))
    server.register_function(lambda: {"statename": "RUNNING", "statecode": 1}, "supervisor.getState")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield data
    server.shutdown()
    server.server_close()


def test_a_restore_never_overwrites_a_running_lab(fake_running_lab, good_archive):
    from obslab.lab.native import NativeLab

    data = fake_running_lab
    assert NativeLab(data).running()
    before = _tree(data)
    with pytest.raises(BackupError, match="a lab is running from .*; stop it first"):
        backup.restore(good_archive, data, force=True)
    assert _tree(data) == before
    # Backing up a running lab is fine: that is what the write pause is for.
    assert backup.create(data).manifest["lab"]["running"] is True
    # ... from a shell that resolves the same databases as the lab's components said they use.
    (data / "logs" / "accounts.log").write_text(json.dumps({
        "message": "service configured", "database": "mysql+pymysql://root@db:3306/obslab_accounts"}) + "\n")
    with pytest.raises(BackupError, match="the running lab keeps accounts's data in mysql.*OBSLAB_DB_URL"):
        backup.create(data)


def test_a_restore_into_a_stopped_lab_needs_force_and_keeps_what_it_replaces(lab_dir, good_archive):
    data, _files, _not_state = lab_dir
    (data / "db" / "accounts.sqlite3-wal").write_bytes(b"a stale WAL that must not meet the restored file")
    (data / "backups").mkdir()
    (data / "backups" / "older.tar.gz").write_bytes(b"kept")
    before = _tree(data)
    with pytest.raises(BackupError, match="already holds a lab's state.*--force"):
        backup.restore(good_archive, data)
    assert _tree(data) == before

    elsewhere = data.parent / "documents"
    elsewhere.mkdir()
    (elsewhere / "letter.txt").write_text("not a lab")
    (elsewhere / "db").mkdir()            # a folder of that name is not enough: run/lab.json or run/secrets
    (elsewhere / "run").mkdir()
    with pytest.raises(BackupError, match="does not look like a lab's data directory"):
        backup.restore(good_archive, elsewhere, force=True)
    assert (elsewhere / "letter.txt").read_text() == "not a lab"

    result = backup.restore(good_archive, data, force=True)
    assert result.replaced is not None and _tree(result.replaced)["db/accounts.sqlite3"] == before["db/accounts.sqlite3"]
    after = _tree(data)
    assert not (data / "db" / "accounts.sqlite3-wal").exists()
    assert after["logs/accounts.log"] == before["logs/accounts.log"]            # not state: carried over
    assert after["backups/older.tar.gz"] == before["backups/older.tar.gz"]
    assert after["prometheus/prometheus.yml"] == before["prometheus/prometheus.yml"]
    assert "prometheus/data/chunks_head/000001" not in after                  # replaced with the TSDB
    assert backup.sqlite_ledger_summary(data / "db" / "accounts.sqlite3")["sound"]


@pytest.mark.parametrize("failure", [OSError(errno.EIO, "the disk went away"), KeyboardInterrupt()],
                         ids=["error", "signal"])
def test_a_restore_over_a_lab_that_fails_at_its_last_rename_leaves_the_lab_whole(
        lab_dir, good_archive, monkeypatch, failure):
    data, _files, _not_state = lab_dir
    (data / "backups").mkdir()
    (data / "backups" / "older.tar.gz").write_bytes(b"the only copy")
    before = _tree(data)
    rename = os.rename

    def failing(source, target):
        if Path(target) == data and ".restore-" in Path(source).name:   # the restored copy into place
            raise failure
        return rename(source, target)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(type(failure) if isinstance(failure, KeyboardInterrupt) else BackupError):
        backup.restore(good_archive, data, force=True)
    assert _tree(data) == before                                           # backups/ and logs/ included
    assert [p.name for p in data.parent.iterdir()] == ["lab"]             # no staging, no replaced copy


def test_a_restore_over_a_lab_that_cannot_carry_the_logs_over_is_done_and_says_where_they_are(
        lab_dir, good_archive, monkeypatch):
    data, _files, _not_state = lab_dir
    rename = os.rename

    def failing(source, target):
        if Path(source).name == "logs":
            raise OSError(errno.EIO, "the disk went away")
        return rename(source, target)

    monkeypatch.setattr(os, "rename", failing)
    result = backup.restore(good_archive, data, force=True)
    assert result.replaced is not None and (result.replaced / "logs" / "accounts.log").read_bytes() == b"log line"
    assert [w for w in result.warnings if str(result.replaced) in w and "by hand" in w]
    assert (data / "run" / "lab.json").exists()                          # the rest was carried over


def test_a_copy_whose_ledger_does_not_balance_is_restored_only_with_force(lab_dir, tmp_path):
    data, _files, _not_state = lab_dir
    books = sqlite3.connect(data / "db" / "accounts.sqlite3")
    books.execute("UPDATE accounts SET balance_minor = balance_minor + 1 WHERE owner_id = 'cus_0'")
    books.commit()
    books.close()
    result = backup.create(data)
    assert not result.manifest["databases"]["accounts"]["ledger"]["sound"]
    target = tmp_path / "fresh"
    with pytest.raises(BackupError, match="the backup's ledger is not sound .*balances sum to 1.*--force"):
        backup.restore(result.archive, target)
    assert not target.exists()
    restored = backup.restore(result.archive, target, force=True)
    assert not restored.ledger["sound"] and [w for w in restored.warnings if "not sound" in w]


def test_backup_create_refuses_an_existing_out_file_and_a_missing_lab(lab_dir, tmp_path, capsys):
    data, _files, _not_state = lab_dir
    taken = tmp_path / "taken.tar.gz"
    taken.write_bytes(b"mine")
    assert main(["backup", "create", "--data-dir", str(data), "--out", str(taken)]) == 2
    assert "exists already" in capsys.readouterr().err and taken.read_bytes() == b"mine"
    assert main(["backup", "create", "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "no lab to back up" in capsys.readouterr().err


def test_the_cli_prints_json_and_lists_newest_first(lab_dir, capsys):
    data, _files, _not_state = lab_dir
    assert main(["backup", "create", "--data-dir", str(data), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["ledger"]["sound"] and first["secrets"] == "plaintext" and first["size_bytes"] > 0
    time.sleep(1.1)
    assert main(["backup", "create", "--data-dir", str(data), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    (data / "backups" / "obslab-backup-20200101T000000Z.tar.gz").write_bytes(b"rubbish")
    assert main(["backup", "list", "--data-dir", str(data), "--verify", "--json"]) == 1   # one is broken
    listed = json.loads(capsys.readouterr().out)["backups"]
    assert [b["path"] for b in listed[:2]] == [second["archive"], first["archive"]]
    assert [b["status"] for b in listed] == ["verified", "verified", listed[2]["status"]]
    assert not listed[2]["ok"] and "corrupt" in listed[2]["status"]


# --- retention and the schedule ----------------------------------------------------------------


def test_pruning_keeps_the_newest_scheduled_backups_and_never_a_manual_one(tmp_path):
    names = ["obslab-backup-20260101T000000Z-scheduled.tar.gz", "obslab-backup-20260102T000000Z-scheduled.tar.gz",
             "obslab-backup-20260103T000000Z-scheduled.tar.gz", "obslab-backup-20260103T000000Z-2-scheduled.tar.gz",
             "obslab-backup-20250101T000000Z.tar.gz", "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = backup.prune(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == sorted(names[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
    with pytest.raises(BackupError):
        backup.prune(tmp_path, keep=0)


def test_the_next_scheduled_backup_is_due_every_interval_after_the_newest():
    hour = 3600.0
    assert backup.next_due(None, 6 * hour, started=1000.0) == 1000.0 + backup.SCHEDULE_FIRST_DELAY_SECONDS
    assert backup.next_due(5000.0, 6 * hour, started=1000.0) == 5000.0 + 6 * hour
    # A failure is retried ten minutes later, not in a tight loop.
    assert backup.next_due(5000.0, 6 * hour, started=1000.0, last_failure=30000.0) == 30000.0 + 600


def test_the_scheduler_takes_a_due_backup_and_prunes_to_keep(lab_dir):
    data, _files, _not_state = lab_dir
    directory = data / "backups"
    directory.mkdir()
    old = [f"obslab-backup-2020010{d}T000000Z-scheduled.tar.gz" for d in (1, 2, 3)]
    for name in old:
        (directory / name).write_bytes(b"old")
    said: list[str] = []
    taken = backup.run_schedule(data, 3600, 2, stop=threading.Event(), say=said.append, max_runs=1)
    assert taken == 1
    left = sorted(p.name for p in backup.archives(directory))
    assert len(left) == 2 and left[0] == old[2] and left[1].endswith("-scheduled.tar.gz")
    backup.verify(directory / left[1])
    assert any("pruned" in line for line in said)
    with pytest.raises(BackupError, match="at least 60"):
        backup.run_schedule(data, 10, 2, stop=threading.Event(), max_runs=1)


class FakeTime(threading.Event):
    """The scheduler's clock and stop event: time passes only while it waits; it stops once
    ``stop_after`` backups were tried (``calls``: when)."""

    def __init__(self, now: float) -> None:
        super().__init__()
        self.now = now
        self.calls: list[float] = []
        self.stop_after: int | None = None

    def __call__(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            self.set()
        self.now += timeout or 0
        return self.is_set()

    def again(self, stop_after: int) -> FakeTime:
        self.clear()
        self.calls.clear()
        self.stop_after = stop_after
        return self


def test_the_scheduler_survives_any_failure_and_retries_it_later_also_after_a_restart(lab_dir, monkeypatch):
    data, _files, _not_state = lab_dir
    directory = data / "backups"
    fake = FakeTime(time.time() + 10 * 86400)
    create = backup.create
    outcomes = iter([RuntimeError("a bug, not a BackupError"), None])

    def scripted(data_dir, **kwargs):
        fake.calls.append(fake.now)
        failure = next(outcomes, BackupError("could not pause the lab's writes"))
        if failure is not None:
            raise failure
        return create(data_dir, **kwargs)

    monkeypatch.setattr(backup, "create", scripted)
    said: list[str] = []
    assert backup.run_schedule(data, 3600, 2, stop=fake, clock=fake, say=said.append, max_runs=1) == 1
    assert fake.calls[1] - fake.calls[0] >= backup.SCHEDULE_RETRY_SECONDS
    assert [line for line in said if "backup failed: RuntimeError: a bug, not a BackupError; trying again" in line]
    assert [line for line in said if line.startswith("Traceback")]          # a bug: its traceback is logged
    assert not (directory / backup.LAST_FAILURE_NAME).exists()             # forgotten after a success

    # A failure is remembered: a scheduler started again soon after does not try at once.
    fake.now += 86400
    assert backup.run_schedule(data, 3600, 2, stop=fake.again(1), clock=fake, say=said.append) == 0
    failed_at = json.loads((directory / backup.LAST_FAILURE_NAME).read_text())["at"]
    assert failed_at == fake.calls[0]
    fake.now += 5
    restarted = fake.now
    assert backup.run_schedule(data, 3600, 2, stop=fake.again(1), clock=fake, say=said.append) == 0
    assert fake.calls[0] >= failed_at + backup.SCHEDULE_RETRY_SECONDS and fake.calls[0] > restarted

    # Times in the future (a clock set back) delay nothing beyond one interval.
    (directory / backup.LAST_FAILURE_NAME).write_text(json.dumps({"at": fake.now + 30 * 86400}))
    (directory / "obslab-backup-20990101T000000Z-scheduled.tar.gz").write_bytes(b"from a clock set forward")
    started = fake.now
    assert backup.run_schedule(data, 3600, 2, stop=fake.again(1), clock=fake, say=said.append) == 0
    assert started + 3600 <= fake.calls[0] <= started + 3600 + 60


def test_up_backup_every_supervises_a_scheduler_that_the_backup_command_understands(tmp_path):
    from obslab.cli import build_parser
    from obslab.lab.native import NativeLab

    lab = NativeLab(tmp_path / "lab", out=io.StringIO())
    program = lab._backup_program(6 * 3600, 5)
    assert program.name == backup.SCHEDULER_PROGRAM and program.command[1:3] == ["-m", "obslab"]
    args = build_parser().parse_args(program.command[3:])
    assert (args.backup_action, args.every, args.keep, args.data_dir) == ("schedule", "21600s", 5, str(tmp_path / "lab"))
    # Long intervals too: `{:g}` wrote 2w as 1.2096e+06s, which the scheduler could not read.
    for text in ("2w", "30d"):
        every = settings.parse_duration(text)
        args = build_parser().parse_args(lab._backup_program(every, 5).command[3:])
        assert settings.parse_duration(args.every) == every, args.every
    assert main(["up", "--backup-every", "30s", "--data-dir", str(tmp_path / "lab")]) == 2   # refused before anything starts
    assert not (tmp_path / "lab").exists()


def test_a_stale_staging_directory_of_a_killed_backup_is_cleaned_up(lab_dir):
    data, _files, _not_state = lab_dir
    stale = data / "backups" / ".staging-999-dead"
    stale.mkdir(parents=True)
    (stale / "half").write_bytes(b"x")
    (data / "backups" / ".obslab-backup-x.tar.gz.999.partial").write_bytes(b"x")
    backup.create(data)
    assert sorted(p.name for p in (data / "backups").iterdir() if p.name.startswith(".")) == [".lock"]

