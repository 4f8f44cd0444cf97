"""Backups of a native lab (``obslab backup create|verify|restore|list``, and the scheduler behind
``obslab up --backup-every``): one ``.tar.gz`` holding all of a lab's state, taken while it runs
or not, checked member by member, restored into a stopped lab or a fresh directory.

**What is state** is found from the code, not listed by hand where the code knows it:

- every database: each component that obslab/topology.py gives ``database=True`` (a component
  added later is covered by that flag alone), wherever obslab/platform/db.py puts it: a SQLite
  file (``db/<component>.sqlite3``; the trace sink's ``traces/spans.sqlite3``) or a schema on a
  MySQL/MariaDB server (``OBSLAB_DB_URL``, ``OBSLAB_<SERVICE>_DB_URL``). Customers, the ledger,
  transfers, payments, the fault audit log, the alert-receiver's notifications and drill reports
  live there;
- the Prometheus TSDB, ``prometheus/data``;
- :data:`FILE_STATE`: the lab's generated secrets, Alertmanager's silences and notification log,
  the ML models, drill reports and history, the incident labels of simulated history.

Not state, and not in a backup: ``logs/``, ``backups/``, ``bench/``, and what ``obslab up`` writes
anew at every start (``prometheus.yml`` and the rules, ``alertmanager.yml``, supervisord's files,
the lab manifest). A top-level entry of the data directory that is none of these is reported as
not backed up, so that new state cannot go missing silently.

**Money is consistent in a backup taken under traffic.** The ledger (accounts, movements and
their entries) lives in one database, the accounts service's, and each movement is one
transaction there: a snapshot of that one database is atomic, so a restored ledger always sums
to zero and never holds half a movement (:func:`ledger_summary` proves it on the copy, at backup
and again at restore). Beyond the ledger, services keep their own records of the same money
(transactions' transfers, payments' payments); those are captured at the *same instant* as the
ledger, so a transfer the transactions service calls completed is in the restored ledger too:

- SQLite: a write pause of milliseconds. The backup opens every database first, then takes
  every database's write lock (``BEGIN IMMEDIATE``, in topology order), opens a read snapshot on
  each, and lets go of the locks; each database is then copied from its snapshot (``sqlite3``
  online backup API) while the lab writes on. Each lock is waited for a quarter of a second at
  most: when one is busy (a service's transaction in progress), every lock taken so far is let
  go at once, and the whole step is tried again after a pause with jitter, for
  :data:`FREEZE_DEADLINE_SECONDS` in all, after which the backup fails with one line. So the lab
  is never held up longer than that quarter of a second by a busy database, and the backup
  never waits while holding what others wait for. Every database must be in WAL mode (the
  services set it): with a rollback journal, the read snapshot would block every writer for the
  whole copy, so a running lab's database in another mode is refused (a stopped lab's is copied).
- MySQL/MariaDB: one session reads every service schema on the server inside one
  ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` (REPEATABLE READ): one instant for all of them.
  The dump is written here, in Python, rather than by ``mysqldump --single-transaction``: a
  consistent snapshot across schemas needs ``mysqldump --databases``, whose output names the
  schemas and cannot be loaded under other names (a fresh lab, a staging schema); the lab's
  image has no MySQL client programs; and a MariaDB ``mysqldump`` against a MySQL 8 server (or
  the other way round) is its own source of failures. Each schema becomes a SQL file of one
  statement per line (``CREATE TABLE`` from ``SHOW CREATE TABLE``, then ``INSERT`` batches) that
  the ``mysql`` client could load as well.

What such an instant can hold is what a crash at that instant leaves (a transfer recorded as
pending whose movement did or did not happen yet), and the services resolve it as they do after a
crash: a retry under the same Idempotency-Key resumes the same transfer id, and the ledger applies
a movement id once.

**Prometheus.** When the lab's Prometheus runs with its admin API (``OBSLAB_PROMETHEUS_ADMIN_API``;
off by default: Prometheus has no authentication in front of it natively, and the admin API lets
anybody on the machine delete series), the TSDB is snapshotted through
``POST /api/v1/admin/tsdb/snapshot`` (the head persisted as a block) and the snapshot linked into
the backup. Otherwise the backup is a crash-consistent copy of the TSDB directory, which is what
Prometheus is built to recover from: the persisted blocks (immutable: hard links, or copies) and
the write-ahead log, which holds every sample of the head; the memory-mapped head chunks are left
out (Prometheus rebuilds the head from the WAL at start; a WAL segment copied while being written
ends in a torn record, which Prometheus repairs as after a power cut). If a compaction changes
the blocks or the WAL checkpoint while they are copied, the copy starts again.

**Secrets** are in the archive unencrypted and marked so (manifest ``"secrets": "plaintext"``,
a warning at every backup); the archive is created 0600 (its folder 0700). Encrypting just the
secrets would protect little: the same archive holds every customer's data and password hash, so
the archive as a whole must be kept like the data directory; and a scheduled backup taken
unattended would need its key beside it. A restored lab without its secrets would not work
either: the load generator's customers sign in with a generated password kept there.

**Free space** is checked before anything is written: the staging copy needs about the size
of the databases (their WAL included), the TSDB and the other state, the archive about the size of
the last one (or of the staging copy, for the first); ``restore`` needs the archive's members
unpacked. Each beside :data:`SPACE_RESERVE_BYTES` to spare, or the command stops with one line.

**Scheduled backups** (:func:`run_schedule`) survive any failure: it is logged, and its time kept
in ``<backup folder>/.last-failure.json``, so that a scheduler restarted after a failure (the lab
restarted, say) waits :data:`SCHEDULE_RETRY_SECONDS` before it tries again rather than pausing the
lab's writes in a loop. A backup time in the future (the clock was set back) counts from when it
was first seen, not from the future.

**The archive**: ``manifest.json`` first (format, obslab version, time in UTC, the lab's profile,
database backend, components, versions, and per member its path, size and SHA-256), then the
members: ``data/<path in the data directory>`` and ``mysql/<component>.sql``. ``verify`` reads the
whole archive to its gzip trailer (its CRC and length) and checks each member against the
manifest; ``restore`` does the same while it unpacks into a directory beside the target, and moves
the result into place only when every member checked out.

**What the checks prove.** The SHA-256 of each member, the manifest's own structure and gzip's
CRC detect damage: a truncated, bit-flipped or partly rewritten archive. They do not prove who
wrote it: whoever can change the archive can change the manifest's digests to match (telling a
deliberate forgery apart needs an HMAC whose key is kept outside the archive, which obslab does
not have). What a changed archive can do is limited instead: members only under the known state
paths (:data:`FILE_STATE`, ``db/``, ``traces/``, ``prometheus/data/``, the manifest's SQLite
databases, ``mysql/<component>.sql``), every database member listed among the members, and a MySQL
dump loaded only if each statement has a shape the dumper writes (its two ``SET`` lines,
``CREATE TABLE`` and ``INSERT INTO`` of an unqualified table, no ``SELECT``, comment or other
schema in them), into a staging schema. A restore also refuses a copy whose ledger does not sum
to zero or holds half movements, unless ``--force``.

**Restoring over a lab** (``--force``, a stopped lab: ``run/lab.json`` or ``run/secrets`` there)
commits in this order, each step undone if a later one fails: the lab's directory is renamed to
``DIR.replaced-<time>`` and the unpacked copy renamed into its place; then the MySQL tables are
swapped in (one ``RENAME TABLE`` per server), the tables they replace moved into schemas
``obslab_replaced_<token>_<n>`` that are kept and named, as the replaced directory is; last, what a
restore does not replace (``logs/``, ``backups/``, supervisord's files ...) is moved from the
replaced directory into the restored one. An interruption anywhere leaves every file in one of the
two directories.
"""

from __future__ import annotations

import calendar
import errno
import fcntl
import gzip
import hashlib
import io
import json
import os
import platform
import random
import re
import secrets as _random
import shutil
import signal
import sqlite3
import tarfile
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import requests

from obslab import __version__, settings, topology
from obslab import conventions as c
from obslab.lab.native import LabError, NativeLab
from obslab.secrets import private_dir

FORMAT = 1
KIND = "obslab-backup"
MANIFEST_NAME = "manifest.json"
DATA = "data"
MYSQL = "mysql"
SUFFIX = ".tar.gz"
NAME_PREFIX = "obslab-backup-"
SCHEDULED_TAG = "-scheduled"
SECRETS_PLAINTEXT = "plaintext"
PROMETHEUS_TSDB = "prometheus/data"
# The write locks: each waited for this long at most (then all let go and tried again after a
# pause), the whole step for FREEZE_DEADLINE_SECONDS.
FREEZE_LOCK_TIMEOUT_SECONDS = 0.25
FREEZE_DEADLINE_SECONDS = 5.0
FREEZE_BACKOFF_SECONDS = (0.05, 0.5)      # the pause after a busy lock: first, at most (jittered)
# Kept free beside what a backup or restore is expected to write.
SPACE_RESERVE_BYTES = 64 * 1024 * 1024
TSDB_COPY_ATTEMPTS = 4
# A MySQL INSERT of about this much SQL (servers accept 16 MiB by default at least).
MYSQL_INSERT_BYTES = 512 * 1024
GZIP_LEVEL = 6
SCHEDULE_MIN_SECONDS = 60.0
SCHEDULE_FIRST_DELAY_SECONDS = 60.0      # the first scheduled backup of a lab that has none
SCHEDULE_RETRY_SECONDS = 600.0           # after a failed scheduled backup
SCHEDULER_PROGRAM = "backup-scheduler"   # its supervisord program (obslab up --backup-every)
LAST_FAILURE_NAME = ".last-failure.json"   # in the backup folder: when the last scheduled one failed

_STAMP = re.compile(rf"^{NAME_PREFIX}(\d{{8}}T\d{{6}}Z)(?:-\d+)?({SCHEDULED_TAG})?{re.escape(SUFFIX)}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BLOCK = re.compile(r"^[0-9A-Z]{26}$")   # a TSDB block (a ULID)


class BackupError(LabError):
    """Something the user has to fix; the message says what, on one line."""


@dataclass(frozen=True)
class StatePath:
    """State beside the databases: a file or folder under the data directory (``exclude``: names
    directly inside it left out)."""

    relative: str
    what: str
    exclude: tuple[str, ...] = ()


FILE_STATE: tuple[StatePath, ...] = (
    StatePath("run/secrets", "the lab's generated secrets"),
    StatePath("run/seeded", "marker: the demo customers exist"),
    StatePath("alertmanager/data", "Alertmanager's silences and notification log"),
    StatePath("ml", "ML models (the DDoS detector's) and their decisions"),
    StatePath("drills", "drill reports, their history, a drill in progress"),
    # The incident labels; the OpenMetrics text `history --keep-openmetrics` keeps is scratch.
    StatePath("history", "the incident labels of simulated history", exclude=("openmetrics",)),
)
# Top-level entries of a data directory that are not state (or not only): nothing to warn about.
NOT_STATE = {"logs": "component logs", "backups": "the backups", "bench": "benchmark output",
             "prometheus": "configuration written by `obslab up` (its data/ is backed up)",
             "alertmanager": "configuration written by `obslab up` (its data/ is backed up)",
             "run": "supervisord's files and the lab manifest (its secrets/ are backed up)"}
# What a restore replaces as a whole (everything else in a --force target is kept).
_REPLACED = ("db", "traces", PROMETHEUS_TSDB, *(state.relative for state in FILE_STATE))

Say = Callable[[str], None]


def _quiet(_text: str) -> None:
    pass


# --- where a lab keeps its state ---------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseRef:
    """Where one component's database is: a SQLite file (``relative`` to the data directory) or
    a schema on a MySQL/MariaDB server (``url``, password included)."""

    component: str
    backend: str                      # "sqlite" | "mysql"
    path: Path | None = None
    relative: str | None = None
    url: Any = None                   # sqlalchemy URL

    @property
    def schema(self) -> str:
        return self.url.database

    def describe(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.path}"
        return self.url.render_as_string(hide_password=True)


def backup_dir(data_dir: Path) -> Path:
    """``$OBSLAB_BACKUP_DIR``, else ``<data dir>/backups``."""
    configured = settings.BACKUP_DIR.get()
    return configured.resolve() if configured else data_dir / "backups"


def database_components() -> list[topology.Component]:
    """Every component of the native lab that keeps a database, in topology order."""
    return [comp for comp in topology.ALL if comp.database and comp.runs_in("native")]


def database_ref(component: str, data_dir: Path) -> DatabaseRef:
    """Where ``component`` keeps its database for a lab in ``data_dir``, resolved as the component
    resolves it (obslab/platform/db.py) from this process's environment."""
    from obslab.platform import db

    if component == topology.TRACE_SINK.name:
        # obslab/lab/trace_sink.py: always a SQLite file of its own, natively only.
        return _sqlite_ref(component, data_dir / "traces" / "spans.sqlite3", data_dir)
    if settings.SERVICE_DB_URL.of(component).get() or settings.DB_URL.get():
        url = db.resolve_url(component)
        backend = url.get_backend_name()
        if backend == "sqlite" and url.database:
            return _sqlite_ref(component, Path(url.database), data_dir)
        if backend in ("mysql", "mariadb"):
            return DatabaseRef(component, "mysql", url=url)
        raise BackupError(f"{component}'s database ({url.render_as_string(hide_password=True)}) is neither "
                          "SQLite nor MySQL/MariaDB; obslab backup cannot copy it")
    return _sqlite_ref(component, data_dir / "db" / f"{component}.sqlite3", data_dir)


def _sqlite_ref(component: str, path: Path, data_dir: Path) -> DatabaseRef:
    path = path.resolve()
    try:
        relative = path.relative_to(data_dir.resolve()).as_posix()
    except ValueError:
        raise BackupError(f"{component}'s SQLite database {path} is outside the data directory {data_dir}; "
                          f"unset {settings.SERVICE_DB_URL.of(component).name} or back it up yourself") from None
    return DatabaseRef(component, "sqlite", path=path, relative=relative)


def _lab_databases(data_dir: Path) -> dict[str, str]:
    """What the running lab's components say their database is (each logs it at start)."""
    found: dict[str, str] = {}
    for comp in database_components():
        log = data_dir / "logs" / f"{comp.name}.log"
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            if '"service configured"' in line:
                try:
                    found[comp.name] = json.loads(line)["database"]
                except (ValueError, KeyError, TypeError):
                    pass
                break
    return found


def _check_matches_lab(refs: list[DatabaseRef], data_dir: Path) -> None:
    """A running lab's databases are the ones this process would copy (same OBSLAB_DB_URL)."""
    running = _lab_databases(data_dir)
    for ref in refs:
        theirs = running.get(ref.component)
        if theirs is None:
            continue
        same = (theirs == ref.describe() if ref.backend == "mysql"
                else theirs.startswith("sqlite:") and Path(theirs.split("///", 1)[-1]).resolve() == ref.path)
        if not same:
            raise BackupError(f"the running lab keeps {ref.component}'s data in {theirs}, but this shell resolves "
                              f"{ref.describe()}; run `obslab backup` with the lab's {settings.DB_URL.name}")


def unknown_state(data_dir: Path) -> list[str]:
    """Top-level entries of ``data_dir`` that are neither backed up nor known not to be state."""
    known = {"db", "traces", *NOT_STATE, *(state.relative.split("/")[0] for state in FILE_STATE)}
    try:
        entries = sorted(p.name for p in data_dir.iterdir())
    except OSError:
        return []
    return [name for name in entries if name not in known and not name.startswith(".")]


# --- members -----------------------------------------------------------------------------------


@dataclass
class Member:
    path: str          # in the archive, e.g. data/db/accounts.sqlite3
    source: Path       # the staged file
    size: int = 0
    sha256: str = ""

    def record(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def _digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file never changes in place (TSDB blocks), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(source, target)


def _scratch(name: str) -> bool:
    """A file being written to be renamed into place (the ML models' ``.<name>.partial``): not state."""
    return name.endswith((".partial", ".tmp"))


def _copy_tree(source: Path, target: Path, exclude: tuple[str, ...] = ()) -> int:
    """Copy the regular files under ``source`` (a file or folder); returns how many."""
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return 1
    count = 0
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if relative.parts[0] in exclude or not path.is_file() or path.is_symlink() or _scratch(path.name):
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(path, destination)
        except FileNotFoundError:
            continue  # went away meanwhile (a rotated file): it is not state at this instant
        count += 1
    return count


# --- the ledger, checked on a copy --------------------------------------------------------------


def _ledger_queries() -> dict[str, str]:
    from obslab.services.accounts import ledger

    a, m, e = ledger.accounts.name, ledger.movements.name, ledger.entries.name
    return {
        "accounts": f"SELECT COUNT(*), COALESCE(SUM(balance_minor), 0) FROM {a}",
        "movements": f"SELECT COUNT(*) FROM {m}",
        "balance_mismatches": (
            f"SELECT COUNT(*) FROM {a} LEFT JOIN (SELECT account_id, SUM(amount_minor) AS total FROM {e} "
            f"GROUP BY account_id) sums ON sums.account_id = {a}.id WHERE {a}.balance_minor <> COALESCE(sums.total, 0)"),
        # A half movement: one side written and not the other (or lines that do not cancel out).
        "half_movements": (
            f"SELECT (SELECT COUNT(*) FROM (SELECT movement_id FROM {e} GROUP BY movement_id "
            f"HAVING COUNT(*) <> 2 OR SUM(amount_minor) <> 0) odd) + (SELECT COUNT(*) FROM {m} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {e} WHERE {e}.movement_id = {m}.id))"),
    }


def ledger_summary(execute: Callable[[str], tuple]) -> dict[str, Any]:
    """The ledger's books in a copy: counts, the sum of every balance (0 when sound), balances that
    are not the sum of their entries, half movements. ``execute(sql)`` returns the first row."""
    queries = _ledger_queries()
    accounts, total = execute(queries["accounts"])
    summary = {"accounts": int(accounts), "movements": int(execute(queries["movements"])[0]),
               "sum_minor": int(total), "balance_mismatches": int(execute(queries["balance_mismatches"])[0]),
               "half_movements": int(execute(queries["half_movements"])[0])}
    summary["sound"] = summary["sum_minor"] == 0 and not summary["balance_mismatches"] \
        and not summary["half_movements"]
    return summary


def sqlite_ledger_summary(path: Path) -> dict[str, Any] | None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return ledger_summary(lambda sql: conn.execute(sql).fetchone())
    except sqlite3.OperationalError:
        return None   # no ledger tables (yet)
    finally:
        conn.close()


def describe_ledger(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "no ledger yet"
    text = f"ledger: {summary['movements']} movements, balances sum to {summary['sum_minor']}"
    if summary["balance_mismatches"] or summary["half_movements"]:
        text += (f"; {summary['balance_mismatches']} balances differ from their entries, "
                 f"{summary['half_movements']} half movements")
    return text


# --- SQLite: every database at one instant ------------------------------------------------------


def _sqlite_uri(path: Path) -> str:
    # mode=rw: never create a database that is not there.
    return f"file:{path}?mode=rw"


def _is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds what was asked for."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (5, 6)
    return "locked" in str(exc) or "busy" in str(exc)


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _journal_mode(conn: sqlite3.Connection) -> str:
    conn.execute("PRAGMA busy_timeout=5000")   # holding nothing yet: waiting here holds nobody up
    return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()


def _freeze(present: list[DatabaseRef], writers: dict[str, sqlite3.Connection],
            readers: dict[str, sqlite3.Connection], lock_timeout: float, deadline: float) -> tuple[float, int]:
    """Open a read snapshot on every database while holding every write lock (see the module's
    docstring): each lock waited for ``lock_timeout`` at most; when one is busy, everything is let
    go and tried again after a jittered pause, for ``deadline`` seconds in all. Returns the pause
    of the lab's writes (ms) and the tries it took."""
    for conn in (*writers.values(), *readers.values()):
        conn.execute(f"PRAGMA busy_timeout={int(lock_timeout * 1000)}")
    give_up = time.monotonic() + deadline
    pause = FREEZE_BACKOFF_SECONDS[0]
    attempts = 0
    while True:
        attempts += 1
        held: list[sqlite3.Connection] = []
        opened: list[sqlite3.Connection] = []
        busy: DatabaseRef | None = None
        began = time.monotonic()
        try:
            for ref in present:
                try:
                    writers[ref.component].execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc):
                        raise
                    busy = ref
                    break
                held.append(writers[ref.component])
            if busy is None:
                for ref in present:
                    reader = readers[ref.component]
                    try:
                        reader.execute("BEGIN")
                        opened.append(reader)
                        reader.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()   # the snapshot starts here
                    except sqlite3.OperationalError as exc:
                        if not _is_busy(exc):
                            raise
                        busy = ref
                        break
        finally:
            for writer in held:
                _rollback(writer)
        if busy is None:
            return (time.monotonic() - began) * 1000, attempts
        for reader in opened:
            _rollback(reader)
        if time.monotonic() + pause > give_up:
            raise BackupError(
                f"could not pause the lab's writes within {deadline:g} s: {busy.component}'s database {busy.path} "
                f"was locked by another writer at each of {attempts} tries (a transaction held open?); the lab "
                f"was held up {lock_timeout * 1000:.0f} ms at most per try; nothing was written, try again later")
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, FREEZE_BACKOFF_SECONDS[1])


def capture_sqlite(refs: list[DatabaseRef], staging: Path, *, running: bool = True,
                   lock_timeout: float = FREEZE_LOCK_TIMEOUT_SECONDS, deadline: float = FREEZE_DEADLINE_SECONDS,
                   say: Say = _quiet) -> dict[str, Any]:
    """Copy every SQLite database in ``refs`` as of one instant (see the module's docstring).
    Returns ``{"pause_ms": ..., "attempts": ..., "databases": {component: {...}}}``."""
    present = [ref for ref in refs if ref.path is not None and ref.path.is_file()]
    writers: dict[str, sqlite3.Connection] = {}
    readers: dict[str, sqlite3.Connection] = {}
    current: DatabaseRef | None = None
    try:
        try:
            # Every connection first: opening takes no lock, and nothing waits on us meanwhile.
            for current in present:
                writers[current.component] = sqlite3.connect(_sqlite_uri(current.path), uri=True,
                                                              timeout=lock_timeout, isolation_level=None)
                readers[current.component] = sqlite3.connect(_sqlite_uri(current.path), uri=True,
                                                              timeout=lock_timeout, isolation_level=None)
                mode = _journal_mode(writers[current.component])
                if mode != "wal" and running:
                    raise BackupError(
                        f"{current.component}'s database {current.path} is in journal mode {mode!r}, not WAL: "
                        "a read snapshot of it would stop the running lab's writes to it for the whole copy; "
                        "stop the lab (`obslab down`) and back it up stopped (the services put their databases "
                        "in WAL mode: did something else create this one?)")
            current = None
            pause_ms, attempts = _freeze(present, writers, readers, lock_timeout, deadline)
        finally:
            for writer in writers.values():
                writer.close()
    except BaseException as exc:
        for reader in readers.values():
            reader.close()
        if isinstance(exc, sqlite3.Error):
            where = f"{current.component}'s database {current.path}" if current is not None else "a database"
            raise BackupError(f"could not open {where} for the backup: {exc}") from None
        raise
    databases: dict[str, Any] = {}
    try:
        for ref in refs:
            if ref.component not in readers:
                databases[ref.component] = {"backend": "sqlite", "member": None}
                say(f"    {ref.component:<16} no database yet")
                continue
            began = time.monotonic()
            target = staging / DATA / ref.relative
            target.parent.mkdir(parents=True, exist_ok=True)
            copy = sqlite3.connect(target)
            try:
                readers[ref.component].backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")   # one self-contained file
            finally:
                copy.close()
            info: dict[str, Any] = {"backend": "sqlite", "member": f"{DATA}/{ref.relative}"}
            if ref.component == c.ACCOUNTS:
                info["ledger"] = sqlite_ledger_summary(target)
            databases[ref.component] = info
            extra = f"   {describe_ledger(info['ledger'])}" if "ledger" in info else ""
            say(f"    {ref.component:<16} {_size(target.stat().st_size):>9}  {time.monotonic() - began:5.2f} s{extra}")
    finally:
        for reader in readers.values():
            reader.close()
    return {"pause_ms": round(pause_ms, 1), "attempts": attempts, "databases": databases}


# --- MySQL/MariaDB: every schema in one consistent snapshot -------------------------------------


def _mysql_connect(url: Any, **extra: Any):
    import pymysql

    try:
        return pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                               password=url.password or "", charset="utf8mb4", connect_timeout=5, **extra)
    except pymysql.MySQLError as exc:
        raise BackupError(f"cannot reach MySQL at {url.render_as_string(hide_password=True)}: {exc}") from None


def _server_key(url: Any) -> tuple:
    return (url.host, url.port, url.username, url.password)


# Strings are written with backslash escapes (no raw newline inside a statement): both the dump's
# and the load's session must read them so.
_SESSION_MODE = "SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')"


_FOREIGN_KEY_CHECKS = "SET FOREIGN_KEY_CHECKS=0"


def _quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# --- what a dump may say (checked when it is written and before each statement is loaded) ------

_LITERAL, _NAME = "\ue000", "\ue001"   # what a string literal and a quoted name become in a skeleton
# A string literal (backslash escapes and '' inside) or a `quoted name`, as MySQL's lexer reads them.
_TOKEN = re.compile(r"'(?:[^'\\]++|\\.|'')*+'|`(?:[^`]++|``)*+`", re.S)
_CREATE_HEAD = re.compile(rf"CREATE TABLE {_NAME} \(")
_INSERT = re.compile(rf"INSERT INTO {_NAME} \({_NAME}(?:, {_NAME})*\) VALUES "
                     rf"(?:[\s(),{_LITERAL}]++|NULL|_binary|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)*+")
_DDL_REFUSED = re.compile(
    r"\b(?:SELECT|UNION|DIRECTORY|CONNECTION|PROCEDURE|FUNCTION|TRIGGER|EVENT|GRANT|INTO)\b"   # other things
    r"|[;\"'`#\\]|/\*|--"                                                                   # statements, comments
    rf"|[\w{_NAME}]\s*\.\s*[A-Za-z_{_NAME}]",                                               # another schema's table
    re.IGNORECASE)
_ENGINE = re.compile(r"\bENGINE\s*=\s*(\w+)", re.IGNORECASE)


def check_statement(statement: str) -> None:
    """Raise ValueError (saying why) unless ``statement`` (no trailing ``;``) has a shape the
    dumper writes: its two ``SET`` lines, ``CREATE TABLE`` of an unqualified InnoDB table naming no
    other schema, ``INSERT INTO`` an unqualified table of literal values only."""
    if statement in (_SESSION_MODE, _FOREIGN_KEY_CHECKS):
        return
    skeleton = _TOKEN.sub(lambda m: _LITERAL if m.group().startswith("'") else _NAME, statement)
    shown = statement[:60] + ("..." if len(statement) > 60 else "")
    if skeleton.startswith("INSERT INTO "):
        if not _INSERT.fullmatch(skeleton):
            raise ValueError(f"an INSERT that is not of literal values into an unqualified table ({shown!r})")
        return
    if _CREATE_HEAD.match(skeleton):
        refused = _DDL_REFUSED.search(skeleton, _CREATE_HEAD.match(skeleton).end())
        if refused:
            what = "a name qualified by a schema" if "." in refused.group() else repr(refused.group().strip())
            raise ValueError(f"a CREATE TABLE with {what} in it ({shown!r})")
        engines = {engine.lower() for engine in _ENGINE.findall(skeleton)}
        if engines != {"innodb"}:
            raise ValueError(f"a CREATE TABLE not of an InnoDB table ({shown!r})")
        return
    raise ValueError(f"a statement other than SET, CREATE TABLE and INSERT INTO ({shown!r})")


def dump_schema(cursor: Any, schema: str, out: BinaryIO, escape: Callable[[Any], str]) -> int:
    """Write ``schema``'s tables as SQL, one statement per line, reading in ``cursor``'s
    transaction; returns the rows written."""
    cursor.execute("SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                   "AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", (schema,))
    tables = cursor.fetchall()
    out.write(f"-- obslab backup of schema {schema}: one statement per line\n".encode())
    out.write(f"{_SESSION_MODE};\n{_FOREIGN_KEY_CHECKS};\n".encode())
    rows_written = 0
    for table, engine in tables:
        if (engine or "").lower() != "innodb":
            raise BackupError(f"{schema}.{table} uses the {engine} engine: only InnoDB tables can be copied "
                              "consistently under traffic")
        cursor.execute(f"SHOW CREATE TABLE {_quote_name(schema)}.{_quote_name(table)}")
        ddl = cursor.fetchall()[0][1].replace("\n", " ")   # SHOW CREATE escapes newlines inside literals
        try:
            check_statement(ddl)
        except ValueError as why:   # a backup that no restore would load is not written
            raise BackupError(f"{schema}.{table} cannot be copied: its definition is {why}, which a restore "
                              "refuses") from None
        _write_statement(out, ddl)
        cursor.execute(f"SELECT * FROM {_quote_name(schema)}.{_quote_name(table)}")
        columns = "(" + ", ".join(_quote_name(d[0]) for d in cursor.description) + ")"
        head = f"INSERT INTO {_quote_name(table)} {columns} VALUES "
        batch: list[str] = []
        size = 0
        for row in cursor.fetchall_unbuffered() if hasattr(cursor, "fetchall_unbuffered") else cursor.fetchall():
            values = "(" + ",".join(escape(value) for value in row) + ")"
            batch.append(values)
            size += len(values)
            rows_written += 1
            if size >= MYSQL_INSERT_BYTES:
                _write_statement(out, head + ",".join(batch))
                batch, size = [], 0
        if batch:
            _write_statement(out, head + ",".join(batch))
    return rows_written


def _write_statement(out: BinaryIO, statement: str) -> None:
    if "\n" in statement:   # the escaping below (backslash escapes) keeps every statement on one line
        raise BackupError("a MySQL statement of the dump spans lines; is the server in NO_BACKSLASH_ESCAPES mode?")
    out.write(f"{statement};\n".encode())


def capture_mysql(refs: list[DatabaseRef], staging: Path, *, say: Say = _quiet) -> dict[str, Any]:
    """Dump every MySQL schema in ``refs``, each server's in one consistent snapshot."""
    import pymysql.cursors

    databases: dict[str, Any] = {}
    servers: dict[tuple, list[DatabaseRef]] = {}
    for ref in refs:
        servers.setdefault(_server_key(ref.url), []).append(ref)
    versions: list[str] = []
    for group in servers.values():
        conn = _mysql_connect(group[0].url, cursorclass=pymysql.cursors.SSCursor)
        try:
            with conn.cursor() as cursor:
                cursor.execute(_SESSION_MODE)
                cursor.execute("SELECT VERSION()")
                versions.append(cursor.fetchall()[0][0])
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                for ref in group:
                    cursor.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                                   (ref.schema,))
                    if not cursor.fetchall()[0][0]:
                        databases[ref.component] = {"backend": "mysql", "schema": ref.schema, "member": None}
                        say(f"    {ref.component:<16} no database yet ({ref.schema})")
                        continue
                    began = time.monotonic()
                    member = f"{MYSQL}/{ref.component}.sql"
                    target = staging / member
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with target.open("wb") as out:
                        rows = dump_schema(cursor, ref.schema, out, conn.escape)
                    info: dict[str, Any] = {"backend": "mysql", "schema": ref.schema, "member": member,
                                            "server": ref.url.set(database="").render_as_string(hide_password=True),
                                            "rows": rows}
                    if ref.component == c.ACCOUNTS:
                        info["ledger"] = _mysql_ledger(cursor, ref.schema)
                    databases[ref.component] = info
                    extra = f"   {describe_ledger(info['ledger'])}" if "ledger" in info else ""
                    say(f"    {ref.component:<16} {_size(target.stat().st_size):>9}  "
                        f"{time.monotonic() - began:5.2f} s  {rows} rows{extra}")
                cursor.execute("COMMIT")
        except pymysql.MySQLError as exc:
            raise BackupError(f"MySQL dump failed: {exc}") from None
        finally:
            conn.close()
    return {"databases": databases, "servers": len(servers), "server_versions": sorted(set(versions))}


def _mysql_ledger(cursor: Any, schema: str) -> dict[str, Any] | None:
    import pymysql

    cursor.execute(f"USE {_quote_name(schema)}")

    def first(sql: str) -> tuple:
        cursor.execute(sql)
        return cursor.fetchall()[0]

    try:
        return ledger_summary(first)
    except pymysql.MySQLError:
        return None


def load_schema(dump: Path, url: Any, schema: str) -> int:
    """Create ``schema`` on ``url``'s server and run the dump's statements in it; returns how many."""
    import pymysql

    conn = _mysql_connect(url, autocommit=True)
    count = 0
    try:
        with conn.cursor() as cursor:
            cursor.execute(_SESSION_MODE)
            cursor.execute(f"CREATE DATABASE {_quote_name(schema)} CHARACTER SET utf8mb4")
            cursor.execute(f"USE {_quote_name(schema)}")
            with dump.open("rb") as lines:
                for number, raw in enumerate(lines, 1):
                    statement = raw.decode("utf-8").rstrip("\n")
                    if not statement or statement.startswith("-- "):
                        continue
                    statement = statement.removesuffix(";")
                    try:
                        check_statement(statement)
                    except ValueError as why:
                        raise BackupError(f"{dump.name} line {number}: {why}, which obslab's dump never writes: "
                                          "refusing the archive") from None
                    cursor.execute(statement)   # no parameters: % is literal
                    count += 1
    except UnicodeDecodeError:
        raise BackupError(f"{dump.name} is not UTF-8 text: refusing the archive") from None
    except pymysql.MySQLError as exc:
        raise BackupError(f"loading {dump.name} into MySQL schema {schema} failed: {exc}") from None
    finally:
        conn.close()
    return count


# --- Prometheus ----------------------------------------------------------------------------------


def _prometheus_url(lab: NativeLab) -> str | None:
    for item in lab.manifest():
        if item.name == c.PROMETHEUS:
            return item.url
    return None


def _prometheus_flags(url: str | None, tsdb: Path) -> tuple[dict[str, str] | None, str | None]:
    """The running Prometheus's flags and version, if it answers and its TSDB is ``tsdb``."""
    if url is None:
        return None, None
    try:
        flags = requests.get(f"{url}/api/v1/status/flags", timeout=5).json()["data"]
        version = requests.get(f"{url}/api/v1/status/buildinfo", timeout=5).json()["data"].get("version")
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None, None
    if Path(flags.get("storage.tsdb.path", "")).resolve() != tsdb.resolve():
        return None, None
    return flags, version


@dataclass(frozen=True)
class _TsdbState:
    blocks: tuple[str, ...]
    checkpoints: tuple[str, ...]

    @classmethod
    def of(cls, tsdb: Path) -> _TsdbState:
        blocks = tuple(sorted(p.name for p in tsdb.iterdir() if _BLOCK.match(p.name) and (p / "meta.json").exists()))
        wal = tsdb / "wal"
        checkpoints = tuple(sorted(p.name for p in wal.iterdir() if p.name.startswith("checkpoint.")
                                   and not p.name.endswith(".tmp"))) if wal.is_dir() else ()
        return cls(blocks, checkpoints)


def copy_tsdb(tsdb: Path, target: Path, attempts: int = TSDB_COPY_ATTEMPTS) -> dict[str, Any]:
    """A crash-consistent copy of a (possibly running) Prometheus TSDB: its blocks and its WAL."""
    for _ in range(attempts):
        shutil.rmtree(target, ignore_errors=True)
        before = _TsdbState.of(tsdb)
        try:
            for block in before.blocks:
                for path in sorted((tsdb / block).rglob("*")):
                    if path.is_file():
                        _link_or_copy(path, target / block / path.relative_to(tsdb / block))
            segments = 0
            for log in ("wal", "wbl"):
                if not (tsdb / log).is_dir():
                    continue
                for path in sorted((tsdb / log).rglob("*")):
                    relative = path.relative_to(tsdb)
                    if path.is_file() and not any(part.endswith(".tmp") for part in relative.parts):
                        (target / relative).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(path, target / relative)
                        segments += 1
        except FileNotFoundError:
            continue   # compacted away while being copied: again
        if _TsdbState.of(tsdb) == before:
            return {"blocks": len(before.blocks), "wal_files": segments}
    raise BackupError(f"Prometheus compacted {tsdb} every time it was being copied ({attempts} tries); "
                      "try again in a minute")


def snapshot_tsdb(url: str, tsdb: Path, target: Path) -> dict[str, Any]:
    """Through the admin API: the head persisted as a block, every block linked into ``target``."""
    try:
        response = requests.post(f"{url}/api/v1/admin/tsdb/snapshot", timeout=120)
        response.raise_for_status()
        name = response.json()["data"]["name"]
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise BackupError(f"Prometheus at {url} did not take a TSDB snapshot: {exc}") from None
    snapshot = tsdb / "snapshots" / name
    try:
        files = 0
        for path in sorted(snapshot.rglob("*")):
            if path.is_file():
                _link_or_copy(path, target / path.relative_to(snapshot))
                files += 1
        return {"snapshot": name, "files": files, "blocks": sum(1 for p in snapshot.iterdir() if p.is_dir())}
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


def capture_prometheus(data_dir: Path, staging: Path, url: str | None) -> dict[str, Any]:
    tsdb = data_dir / PROMETHEUS_TSDB
    if not tsdb.is_dir():
        return {"method": "absent"}
    target = staging / DATA / PROMETHEUS_TSDB
    flags, version = _prometheus_flags(url, tsdb)
    if flags is not None and url is not None and flags.get("web.enable-admin-api") == "true":
        return {"method": "snapshot-api", "version": version, **snapshot_tsdb(url, tsdb, target)}
    method = "file-copy (running)" if flags is not None else "file-copy (stopped)"
    return {"method": method, "version": version, **copy_tsdb(tsdb, target)}


# --- free space --------------------------------------------------------------------------------


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_space(needs: list[tuple[Path, int, str]], hint: str) -> None:
    """Each (directory, bytes, what) on its file system, with :data:`SPACE_RESERVE_BYTES` to spare
    per file system; else one line."""
    devices: dict[int, tuple[Path, int, list[str]]] = {}
    for directory, size, what in needs:
        where = _existing(directory)
        device = where.stat().st_dev
        first, total, whats = devices.get(device, (where, 0, []))
        devices[device] = (first, total + size, [*whats, what])
    for where, total, whats in devices.values():
        free = shutil.disk_usage(where).free
        if free < total + SPACE_RESERVE_BYTES:
            raise BackupError(f"not enough free space in {where}: {_size(free)} free, {' and '.join(whats)} need "
                              f"about {_size(total)} and {_size(SPACE_RESERVE_BYTES)} are kept spare; free some "
                              f"space {hint}; nothing was written")


def _size_of(path: Path, exclude: tuple[str, ...] = ()) -> int:
    """Bytes of the regular files under ``path`` (a file or folder), ignoring what goes away meanwhile."""
    if not path.is_dir():
        try:
            return path.stat().st_size
        except OSError:
            return 0
    total = 0
    for root, dirs, files in os.walk(path):
        if Path(root) == path:
            dirs[:] = [d for d in dirs if d not in exclude]
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def expected_backup_size(data_dir: Path, refs: list[DatabaseRef]) -> int:
    """About what the staging copy of a backup takes: the SQLite databases with their WAL, the TSDB's
    blocks and WAL, the other state."""
    total = 0
    for ref in refs:
        if ref.backend == "sqlite" and ref.path is not None:
            total += _size_of(ref.path) + _size_of(Path(f"{ref.path}-wal"))
    tsdb = data_dir / PROMETHEUS_TSDB
    if tsdb.is_dir():
        total += _size_of(tsdb, exclude=("chunks_head", "snapshots"))
    for state in FILE_STATE:
        total += _size_of(data_dir / state.relative, state.exclude)
    return total


# --- create ------------------------------------------------------------------------------------


@contextmanager
def backup_lock(directory: Path) -> Iterator[None]:
    """One backup at a time per backup folder (a scheduled one and a manual one, say)."""
    private_dir(directory)
    fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup is being written in {directory}; wait for it to finish") from None
        # What a killed backup left: nobody else writes here while we hold the lock.
        for stale in directory.iterdir():
            if stale.name.startswith(".staging-"):
                shutil.rmtree(stale, ignore_errors=True)
            elif stale.name.endswith(".partial"):
                stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


def archive_name(created: float, scheduled: bool, n: int = 1) -> str:
    """``obslab-backup-20261207T042900Z[-2][-scheduled].tar.gz`` (UTC; ``-2``: the second that second)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created))
    return f"{NAME_PREFIX}{stamp}{f'-{n}' if n > 1 else ''}{SCHEDULED_TAG if scheduled else ''}{SUFFIX}"


def _free_name(directory: Path, created: float, scheduled: bool) -> Path:
    n = 1
    while (directory / archive_name(created, scheduled, n)).exists():
        n += 1
    return directory / archive_name(created, scheduled, n)


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment % 1 * 1000):03d}Z"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@dataclass
class BackupResult:
    archive: Path
    size: int
    seconds: float
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"archive": str(self.archive), "size_bytes": self.size, "seconds": round(self.seconds, 3),
                "members": len(self.manifest["members"]), "created_at": self.manifest["created_at"],
                "database_backend": self.manifest["database_backend"],
                "write_pause_ms": self.manifest["consistency"].get("write_pause_ms"),
                "prometheus": self.manifest["prometheus"], "secrets": self.manifest["secrets"],
                "ledger": self.manifest["databases"].get(c.ACCOUNTS, {}).get("ledger"),
                "warnings": self.warnings}


def create(data_dir: Path, out: Path | None = None, *, scheduled: bool = False, say: Say = _quiet,
           offset: int | None = None) -> BackupResult:
    """Back up the lab in ``data_dir`` (running or not) into ``out`` (default: a new file in
    :func:`backup_dir`)."""
    try:
        return _create(data_dir, out, scheduled=scheduled, say=say, offset=offset)
    except (OSError, sqlite3.Error) as exc:   # a full disk, a database that went away ...
        raise BackupError(f"backup failed, nothing was written: {exc}") from None


def _create(data_dir: Path, out: Path | None, *, scheduled: bool, say: Say, offset: int | None) -> BackupResult:
    started = time.monotonic()
    data_dir = data_dir.resolve()
    if not data_dir.is_dir():
        raise BackupError(f"{data_dir} does not exist: no lab to back up (--data-dir names the lab's directory)")
    lab = NativeLab(data_dir, offset=settings.port_offset(offset))
    running = lab.running()
    refs = [database_ref(comp.name, data_dir) for comp in database_components()]
    if running:
        _check_matches_lab(refs, data_dir)
    directory = backup_dir(data_dir)
    if out is not None:
        out = out.expanduser().resolve()
        if out.exists():
            raise BackupError(f"{out} exists already; name a new file")
        if not out.parent.is_dir():
            raise BackupError(f"{out.parent} does not exist; create it first or name another --out")
    backends = sorted({ref.backend for ref in refs})
    warnings = [f"{data_dir / name} is not backed up: obslab knows nothing of it as state "
                "(obslab/lab/backup.py lists what is)" for name in unknown_state(data_dir)]
    ddos_dir = settings.DDOS_MODEL_DIR.get()
    if ddos_dir is not None and not str(ddos_dir.resolve()).startswith(str(data_dir) + os.sep):
        warnings.append(f"the DDoS model in {ddos_dir} ({settings.DDOS_MODEL_DIR.name}) is outside the data "
                        "directory and not backed up")
    with backup_lock(directory):
        staged_bytes = expected_backup_size(data_dir, refs)
        previous = max(archives(directory), key=lambda path: path.stat().st_mtime, default=None)
        _check_space([(directory, staged_bytes, "the staging copy"),
                      (out.parent if out is not None else directory,
                       previous.stat().st_size if previous is not None else staged_bytes, "the archive")],
                     f"or write the backup elsewhere (--out, ${settings.BACKUP_DIR.name})")
        created = time.time()
        target = out or _free_name(directory, created, scheduled)
        staging = directory / f".staging-{os.getpid()}-{_random.token_hex(4)}"
        private_dir(staging)
        state = "running" if running else "stopped"
        profile = lab.recorded_profile() if running else None
        say(f"Backing up {data_dir} (lab {state}{', profile ' + profile if profile else ''}; "
            f"databases: {'+'.join(backends)}) into {target}")
        try:
            manifest = _capture(data_dir, staging, refs, lab, running, created, scheduled, say)
            manifest["lab"]["profile"] = profile
            manifest["warnings"] = warnings
            began = time.monotonic()
            members = _members(staging)
            manifest["members"] = [member.record() for member in members]
            _write_archive(target, manifest, members)
            size = target.stat().st_size
            total = sum(member.size for member in members)
            say(f"  archive     {len(members)} members, {_size(total)} -> {_size(size)} compressed  "
                f"{time.monotonic() - began:5.2f} s")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for warning in warnings:
        say(f"! {warning}")
    ledger = manifest["databases"].get(c.ACCOUNTS, {}).get("ledger")
    if ledger and not ledger["sound"]:
        say(f"! the lab's ledger itself is not sound ({describe_ledger(ledger)}): the backup holds it as it is")
    say(f"! {target.name} holds this lab's secrets unencrypted (keys, tokens, passwords) and its customers' "
        "data: it is readable by you only (0600); keep every copy as private as the data directory")
    seconds = time.monotonic() - started
    say(f"Backup written: {target} ({_size(size)}, {seconds:.1f} s)")
    return BackupResult(target, size, seconds, manifest, warnings)


def _capture(data_dir: Path, staging: Path, refs: list[DatabaseRef], lab: NativeLab, running: bool,
             created: float, scheduled: bool, say: Say) -> dict[str, Any]:
    sqlite_refs = [ref for ref in refs if ref.backend == "sqlite"]
    mysql_refs = [ref for ref in refs if ref.backend == "mysql"]
    databases: dict[str, Any] = {}
    consistency: dict[str, Any] = {}
    versions: dict[str, Any] = {"obslab": __version__, "python": platform.python_version(),
                                "sqlite": sqlite3.sqlite_version}
    began = time.monotonic()
    if sqlite_refs:
        say(f"  databases   {len(sqlite_refs)} SQLite databases at one instant")
        result = capture_sqlite(sqlite_refs, staging, running=running, say=say)
        databases.update(result["databases"])
        consistency["write_pause_ms"] = result["pause_ms"]
        consistency["write_pause_attempts"] = result["attempts"]
        consistency["sqlite"] = "every database's write lock held at once, then a read snapshot of each"
        tries = f" ({result['attempts']} tries: a lock was busy at first)" if result["attempts"] > 1 else ""
        say(f"              writes paused {result['pause_ms']:.0f} ms{tries}; copied in {time.monotonic() - began:.2f} s")
    if mysql_refs:
        began = time.monotonic()
        say(f"  databases   {len(mysql_refs)} MySQL schemas in one consistent snapshot")
        result = capture_mysql(mysql_refs, staging, say=say)
        databases.update(result["databases"])
        versions["mysql_server"] = result["server_versions"]
        consistency["mysql"] = ("START TRANSACTION WITH CONSISTENT SNAPSHOT, one session per server "
                                f"({result['servers']} server{'s' if result['servers'] > 1 else ''})")
        say(f"              dumped in {time.monotonic() - began:.2f} s")
    began = time.monotonic()
    prometheus = capture_prometheus(data_dir, staging, _prometheus_url(lab) if running else None)
    if prometheus.get("version"):
        versions["prometheus"] = prometheus["version"]
    copied = _tree_size(staging / DATA / PROMETHEUS_TSDB)
    say(f"  prometheus  {prometheus['method']}" + (f", {prometheus.get('blocks', 0)} blocks" if copied else "")
        + f"  {_size(copied):>9}  {time.monotonic() - began:5.2f} s")
    files: dict[str, int] = {}
    for state in FILE_STATE:
        source = data_dir / state.relative
        if source.exists():
            began = time.monotonic()
            files[state.relative] = _copy_tree(source, staging / DATA / state.relative, state.exclude)
            count = files[state.relative]
            say(f"  {state.relative:<18} {count:>4} file{'s' if count != 1 else ' '}  "
                f"{_size(_tree_size(staging / DATA / state.relative)):>9}  {time.monotonic() - began:5.2f} s"
                f"   {state.what}")
    backend = "+".join(sorted({ref.backend for ref in refs}))
    return {
        "format": FORMAT, "kind": KIND, "obslab_version": __version__, "created_at": _iso(created),
        "created_unix": round(created, 3), "scheduled": scheduled, "data_dir": str(data_dir),
        "lab": {"running": running, "profile": None},
        "database_backend": backend,
        "components": [comp.name for comp in topology.ALL if comp.runs_in("native")],
        "databases": databases, "prometheus": prometheus, "files": files,
        "secrets": SECRETS_PLAINTEXT if files.get("run/secrets") else "absent",
        "consistency": consistency, "versions": versions,
    }


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _members(staging: Path) -> list[Member]:
    members = []
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        member = Member(path.relative_to(staging).as_posix(), path)
        member.size, member.sha256 = _digest(path)
        members.append(member)
    return members


def _tarinfo(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_archive(target: Path, manifest: dict[str, Any], members: list[Member]) -> None:
    """``manifest.json`` first, then the members; written beside ``target`` and renamed into place."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    created = manifest["created_unix"]
    body = json.dumps(manifest, indent=2).encode()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=int(created)) as gz:
                with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    tar.addfile(_tarinfo(MANIFEST_NAME, len(body), created), io.BytesIO(body))
                    for member in members:
                        with member.source.open("rb") as stream:
                            tar.addfile(_tarinfo(member.path, member.size, created), stream)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --- verify ------------------------------------------------------------------------------------


_COMPONENT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# What the manifest must say, and as what (a manifest without them is not one obslab wrote).
_MANIFEST_FIELDS: dict[str, type] = {"created_at": str, "obslab_version": str, "database_backend": str,
                                     "secrets": str, "databases": dict, "members": list}


def _safe_member(archive: Path, name: str, sqlite_members: frozenset[str] = frozenset()) -> PurePosixPath:
    """A member's path, if it is one a backup holds: under the state paths (``data/<_REPLACED>``), a
    SQLite database the manifest names (outside what is not state), or ``mysql/<component>.sql``."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] not in (DATA, MYSQL) \
            or len(path.parts) < 2 or name != path.as_posix():
        raise BackupError(f"{archive}: member {name!r} is not a path obslab writes; refusing the archive")
    if path.parts[0] == MYSQL:
        known = len(path.parts) == 2 and path.suffix == ".sql" and bool(_COMPONENT.match(path.stem))
    else:
        inner = PurePosixPath(*path.parts[1:])
        known = any(inner == PurePosixPath(root) or PurePosixPath(root) in inner.parents for root in _REPLACED) \
            or (name in sqlite_members and inner.parts[0] not in NOT_STATE)
    if not known:
        raise BackupError(f"{archive}: member {name!r} is outside the state a backup holds; refusing the archive")
    return path


def _check_manifest(archive: Path, manifest: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BackupError(f"{archive}: manifest.json is not an obslab backup manifest")
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{archive}: backup format {manifest.get('format')!r}; this obslab ({__version__}) "
                          f"reads format {FORMAT}")
    for key, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(key), kind):
            raise BackupError(f"{archive}: manifest.json has no valid {key!r}: the archive was changed or "
                              "not written by obslab")
    databases: dict[str, tuple[str, str]] = {}   # member -> (component, backend)
    for component, info in manifest["databases"].items():
        member = info.get("member") if isinstance(info, dict) else None
        if not (_COMPONENT.match(component) and isinstance(info, dict) and info.get("backend") in ("sqlite", "mysql")
                and (member is None or isinstance(member, str))):
            raise BackupError(f"{archive}: manifest.json has a malformed database entry for {component!r}"[:300])
        if member is not None:
            wanted = f"{MYSQL}/{component}.sql" if info["backend"] == "mysql" else None
            if (wanted is not None and member != wanted) or (wanted is None and not member.startswith(f"{DATA}/")) \
                    or member in databases:
                raise BackupError(f"{archive}: manifest.json puts {component}'s database in {member!r}, not where "
                                  "obslab puts it: the archive was changed"[:300])
            databases[member] = (component, info["backend"])
    sqlite_members = frozenset(m for m, (_c, backend) in databases.items() if backend == "sqlite")
    expected: dict[str, dict[str, Any]] = {}
    for record in manifest["members"]:
        if not (isinstance(record, dict) and isinstance(record.get("path"), str)
                and isinstance(record.get("size"), int) and _SHA256.match(str(record.get("sha256", "")))):
            raise BackupError(f"{archive}: manifest.json has a malformed member entry: {record!r}"[:300])
        _safe_member(archive, record["path"], sqlite_members)
        if record["path"] in expected:
            raise BackupError(f"{archive}: manifest.json lists {record['path']} twice")
        expected[record["path"]] = record
    for member, (component, _backend) in sorted(databases.items()):
        if member not in expected:
            raise BackupError(f"{archive}: manifest.json says {component}'s database is {member}, which is not "
                              "among its members: the archive was changed")
    return expected


def _open_manifest(archive: Path, tar: tarfile.TarFile) -> dict[str, Any]:
    first = tar.next()
    if first is None or first.name != MANIFEST_NAME or not first.isreg():
        raise BackupError(f"{archive}: does not start with {MANIFEST_NAME}: not an obslab backup")
    stream = tar.extractfile(first)
    assert stream is not None
    try:
        return json.loads(stream.read())
    except ValueError:
        raise BackupError(f"{archive}: {MANIFEST_NAME} is not JSON: the archive was changed") from None


@contextmanager
def _reading(archive: Path) -> Iterator[tuple[gzip.GzipFile, tarfile.TarFile]]:
    """The archive as a tar stream inside a gzip stream; every way it can be broken, one line."""
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    try:
        with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                yield gz, tar
    except EOFError:
        raise BackupError(f"{archive}: truncated (the compressed stream ends before its end marker); "
                          "nothing was changed") from None
    except (gzip.BadGzipFile, zlib.error, tarfile.TarError) as exc:
        detail = str(exc) or type(exc).__name__
        if "unexpected end" in detail:
            raise BackupError(f"{archive}: truncated ({detail}); nothing was changed") from None
        raise BackupError(f"{archive}: corrupt ({detail}); nothing was changed") from None


def read_manifest(archive: Path) -> dict[str, Any]:
    """The manifest alone (the first member): cheap, but checks nothing else."""
    with _reading(archive) as (_gz, tar):
        manifest = _open_manifest(archive, tar)
        _check_manifest(archive, manifest)
        return manifest


def verify(archive: Path, unpack_into: Path | None = None) -> dict[str, Any]:
    """Check every member of ``archive`` against its manifest (and gzip's own CRC and length);
    with ``unpack_into``, write each member there as it is checked. Returns the manifest."""
    with _reading(archive) as (gz, tar):
        try:
            manifest = _check_members(archive, gz, tar, unpack_into)
        except (BackupError, tarfile.TarError):
            # Damage to the compressed stream shows first as a member that does not match (or a
            # header that makes no sense); gzip's CRC at its end tells damage from a changed archive.
            while gz.read(1 << 20):
                pass
            raise
    return manifest


def _check_members(archive: Path, gz: gzip.GzipFile, tar: tarfile.TarFile, unpack_into: Path | None) -> dict[str, Any]:
    manifest = _open_manifest(archive, tar)
    expected = _check_manifest(archive, manifest)
    seen: set[str] = set()
    while (info := tar.next()) is not None:   # (iterating the TarFile would yield the manifest again)
        name = info.name
        if name in seen:
            raise BackupError(f"{archive}: member {name} appears twice: the archive was changed")
        record = expected.get(name)
        if record is None:
            raise BackupError(f"{archive}: member {name} is not in the manifest: the archive was changed")
        if not info.isreg():
            raise BackupError(f"{archive}: member {name} is not a regular file: the archive was changed")
        if info.size != record["size"]:
            raise BackupError(f"{archive}: member {name} is {info.size} bytes, the manifest says "
                              f"{record['size']}: the archive was changed")
        stream = tar.extractfile(info)
        assert stream is not None
        digest = hashlib.sha256()
        sink = None
        if unpack_into is not None:
            path = unpack_into / name
            private_dir(path.parent)
            sink = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        try:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                if sink is not None:
                    sink.write(chunk)
        finally:
            if sink is not None:
                sink.close()
        if digest.hexdigest() != record["sha256"]:
            raise BackupError(f"{archive}: member {name} does not match its SHA-256 in the manifest: "
                              "the archive was changed")
        seen.add(name)
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(f"{archive}: {len(missing)} member(s) listed in the manifest are missing, "
                          f"e.g. {missing[0]}")
    # To the end of the gzip stream: its CRC-32 and length are checked there, and nothing may follow.
    while gz.read(1 << 20):
        pass
    return manifest


# --- restore -----------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    target: Path
    manifest: dict[str, Any]
    seconds: float
    replaced: Path | None = None
    ledger: dict[str, Any] | None = None
    replaced_schemas: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"data_dir": str(self.target), "seconds": round(self.seconds, 3),
                "backup_created_at": self.manifest["created_at"], "members": len(self.manifest["members"]),
                "database_backend": self.manifest["database_backend"],
                "previous_state": str(self.replaced) if self.replaced else None,
                "previous_schemas": self.replaced_schemas, "ledger": self.ledger, "warnings": self.warnings}


def _mysql_targets(manifest: dict[str, Any], target: Path) -> list[tuple[str, DatabaseRef]]:
    """(member, where it goes) for each MySQL schema in the backup; refuses a backend mismatch."""
    plans = []
    for component, info in manifest.get("databases", {}).items():
        ref = database_ref(component, target)
        if info.get("backend") == "mysql" and info.get("member"):
            if ref.backend != "mysql":
                raise BackupError(f"the backup keeps {component}'s data in MySQL; set {settings.DB_URL.name} to "
                                  "the server to restore it into (the lab then runs with it)")
            plans.append((info["member"], ref))
        elif info.get("backend") == "sqlite" and ref.backend != "sqlite":
            raise BackupError(f"the backup holds SQLite databases, but {settings.DB_URL.name} (or "
                              f"{settings.SERVICE_DB_URL.of(component).name}) points {component} at MySQL here; "
                              "unset it to restore this backup")
    return plans


def _mysql_check_targets(plans: list[tuple[str, DatabaseRef]], force: bool) -> None:
    for _member, ref in plans:
        conn = _mysql_connect(ref.url)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (ref.schema,))
                tables = cursor.fetchone()[0]
                try:
                    cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s "
                                   "AND ID <> CONNECTION_ID()", (ref.schema,))
                    sessions = cursor.fetchone()[0]
                except Exception:   # no PROCESS privilege: the lab check above is all we have
                    sessions = 0
        finally:
            conn.close()
        if sessions:
            raise BackupError(f"{sessions} session(s) use MySQL schema {ref.schema} ({ref.component}): a lab is "
                              "running on it; stop it first (a restore never overwrites a running lab)")
        if tables and not force:
            raise BackupError(f"MySQL schema {ref.schema} ({ref.component}) holds {tables} tables already; "
                              "restore with --force to replace them")


def _carry_over(old: Path, new: Path, relative: PurePosixPath = PurePosixPath("."),
                failed: list[str] | None = None) -> list[str]:
    """Move what a restore does not replace (logs, backups, configuration ...) from ``old`` (the
    replaced directory) into ``new`` (the restored one); the replaced state stays in ``old``.
    Returns what could not be moved ("path: error"), which is still in ``old``: an interruption
    or a failure leaves each entry in one of the two."""
    failed = [] if failed is None else failed
    replaced = {PurePosixPath(path) for path in _REPLACED}
    for entry in sorted((old / relative).iterdir()):
        path = PurePosixPath(os.path.normpath(relative / entry.name))
        if path in replaced:
            continue
        try:
            if any(path in r.parents for r in replaced) and entry.is_dir() and not entry.is_symlink():
                private_dir(new / path)
                _carry_over(old, new, path, failed)
            elif not (new / path).exists():
                os.rename(entry, new / path)
        except OSError as exc:
            failed.append(f"{path}: {exc.strerror or exc}")
    return failed


def _looks_like_lab(directory: Path) -> bool:
    """A lab's data directory: ``obslab up`` wrote its manifest or its secrets there."""
    return (directory / "run" / "lab.json").is_file() or (directory / "run" / "secrets").is_dir()


def _free_replaced_name(target: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    candidate, n = target.with_name(f"{target.name}.replaced-{stamp}"), 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = target.with_name(f"{target.name}.replaced-{stamp}-{n}")
    return candidate


def restore(archive: Path, target: Path, *, force: bool = False, say: Say = _quiet) -> RestoreResult:
    """Restore ``archive`` into ``target``: a new or empty directory, or, with ``force``, a
    stopped lab's (its replaced state is kept beside it). Nothing changes unless every member
    checked out."""
    try:
        return _restore(archive, target, force=force, say=say)
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"restore failed: {exc}") from None


def _restore(archive: Path, target: Path, *, force: bool, say: Say) -> RestoreResult:
    started = time.monotonic()
    archive, target = archive.expanduser().resolve(), target.expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise BackupError(f"{target} is not a directory")
    if NativeLab(target).running():
        raise BackupError(f"a lab is running from {target}; stop it first (`obslab down --data-dir {target}`): "
                          "a restore never overwrites a running lab")
    occupied = target.is_dir() and any(target.iterdir())
    if occupied and not force:
        raise BackupError(f"{target} already holds a lab's state; restore into a new directory (--data-dir DIR), "
                          "or replace it with --force (the current state is kept beside it)")
    if occupied and not _looks_like_lab(target):
        raise BackupError(f"{target} is not empty and does not look like a lab's data directory (no run/lab.json "
                          "or run/secrets/); restore into a new directory")
    manifest = read_manifest(archive)
    plans = _mysql_targets(manifest, target)
    _mysql_check_targets(plans, force)
    _check_space([(target.parent, sum(m["size"] for m in manifest["members"]), "the unpacked backup")],
                 "or restore into a directory on another disk")
    say(f"Restoring {archive} (taken {manifest['created_at']} by obslab {manifest['obslab_version']}, "
        f"databases: {manifest['database_backend']}, secrets: {manifest['secrets']}) into {target}")

    created_dirs = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    private_dir(target.parent)
    staging = target.parent / f".{target.name}.restore-{_random.token_hex(4)}"
    private_dir(staging)
    token = _random.token_hex(4)
    staged_schemas: list[tuple[DatabaseRef, str]] = []
    replaced: Path | None = None
    was_empty_dir = target.is_dir() and not occupied
    files_committed = False
    replaced_schemas: list[str] = []
    warnings: list[str] = []
    ledger = None
    try:
        began = time.monotonic()
        verify(archive, unpack_into=staging)
        say(f"  verified and unpacked {len(manifest['members'])} members in {time.monotonic() - began:.2f} s")
        for index, (member, ref) in enumerate(plans):
            began = time.monotonic()
            schema = f"obslab_restore_{token}_{index}"
            staged_schemas.append((ref, schema))
            statements = load_schema(staging / member, ref.url, schema)
            say(f"    {ref.component:<16} {statements} statements into a staging schema  "
                f"{time.monotonic() - began:5.2f} s")
            if ref.component == c.ACCOUNTS:
                conn = _mysql_connect(ref.url)
                try:
                    with conn.cursor() as cursor:
                        ledger = _mysql_ledger(cursor, schema)
                finally:
                    conn.close()
        shutil.rmtree(staging / MYSQL, ignore_errors=True)
        accounts = manifest["databases"].get(c.ACCOUNTS, {})
        if accounts.get("backend") == "sqlite" and accounts.get("member"):
            ledger = sqlite_ledger_summary(staging / accounts["member"])
        _expand(staging)
        if ledger is not None:
            say(f"  restored {describe_ledger(ledger)}")
            if not ledger["sound"]:
                if not force:
                    raise BackupError(f"the backup's ledger is not sound ({describe_ledger(ledger)}): restoring it "
                                      "would bring back books that do not balance; nothing was changed (--force "
                                      "restores it anyway)")
                warnings.append(f"the restored ledger is not sound ({describe_ledger(ledger)}); restored as it "
                                "is (--force)")
        # --- commit: nothing above changed anything outside the staging directory and schemas.
        # 1. The files: the lab's directory aside (kept whole), the restored one into its place.
        if occupied:
            replaced = _free_replaced_name(target)
            os.rename(target, replaced)
            try:
                os.rename(staging, target)
            except BaseException:
                os.rename(replaced, target)
                replaced = None
                raise
        else:
            if was_empty_dir:
                target.rmdir()
            os.rename(staging, target)
        files_committed = True
        # 2. The MySQL tables (undone on every server if one fails), the replaced ones kept.
        if staged_schemas:
            replaced_schemas = _swap_schemas(staged_schemas, token)
            staged_schemas = []
    except BaseException as failure:
        if files_committed:
            try:
                os.rename(target, staging)
                if replaced is not None:
                    os.rename(replaced, target)
                elif was_empty_dir:
                    target.mkdir(mode=0o700)
            except OSError as exc:
                raise BackupError(f"restore failed ({failure}) and could not be undone ({exc}): the restored "
                                  f"files are in {target if target.exists() else staging}, the lab's own in "
                                  f"{replaced}") from None
        shutil.rmtree(staging, ignore_errors=True)
        for ref, schema in staged_schemas:
            _drop_schema(ref.url, schema)
        for directory in created_dirs:
            try:
                directory.rmdir()
            except OSError:
                pass
        raise
    # 3. What a restore does not replace, back from the replaced directory. A failure here loses
    # nothing (what was not moved is still there), and the restore itself is done.
    if replaced is not None:
        try:
            failed = _carry_over(replaced, target)
        except OSError as exc:
            failed = [f". ({exc.strerror or exc})"]
        if failed:
            warnings.append(f"could not move {'; '.join(failed)} (kept, not replaced by a restore) from {replaced} "
                            f"into {target}; it is still there: move it by hand")
    seconds = time.monotonic() - started
    if replaced is not None:
        say(f"  the state it replaced is in {replaced}; delete it once the restored lab works")
    if replaced_schemas:
        say(f"  the MySQL tables it replaced are in schema{'s' if len(replaced_schemas) > 1 else ''} "
            f"{', '.join(replaced_schemas)}; drop {'them' if len(replaced_schemas) > 1 else 'it'} "
            "(DROP DATABASE) once the restored lab works")
    for warning in warnings:
        say(f"! {warning}")
    say(f"Restored into {target} in {seconds:.1f} s; start it with `obslab up --data-dir {target}`")
    return RestoreResult(target, manifest, seconds, replaced, ledger, replaced_schemas, warnings)


def _expand(staging: Path) -> None:
    """``data/...`` members become the data directory itself."""
    data = staging / DATA
    if not data.is_dir():
        return
    for entry in data.iterdir():
        os.rename(entry, staging / entry.name)
    data.rmdir()


def _drop_schema(url: Any, schema: str) -> None:
    """Best effort: a schema of ours left behind is named obslab_re... and can be dropped by hand."""
    import pymysql

    try:
        conn = _mysql_connect(url, autocommit=True)
    except BackupError:
        return
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {_quote_name(schema)}")
    except pymysql.MySQLError:
        pass
    finally:
        conn.close()


@dataclass
class _Swap:
    ref: DatabaseRef
    staged: str                 # the staging schema the restored tables were loaded into
    kept: str                   # obslab_replaced_<token>_<n>: where the tables they replace go
    old_tables: list[str]
    new_tables: list[str]


def _rename_all(cursor: Any, moves: list[tuple[str, str, str]]) -> None:
    """(from schema, to schema, table) ..., in one ``RENAME TABLE``: all or nothing."""
    if moves:
        cursor.execute("RENAME TABLE " + ", ".join(
            f"{_quote_name(source)}.{_quote_name(table)} TO {_quote_name(target)}.{_quote_name(table)}"
            for source, target, table in moves))


def _swap_schemas(staged: list[tuple[DatabaseRef, str]], token: str) -> list[str]:
    """Move each staged schema's tables into its target schema, per server in one ``RENAME TABLE``
    (atomic), the tables they replace into ``obslab_replaced_<token>_<n>`` schemas that are kept;
    returns those (the ones that received tables). If a server's swap fails, the servers swapped
    before it are swapped back and the error is raised: the staged schemas then hold the restored
    tables again (the caller drops them)."""
    import pymysql

    servers: dict[tuple, list[tuple[DatabaseRef, str]]] = {}
    for ref, schema in staged:
        servers.setdefault(_server_key(ref.url), []).append((ref, schema))
    done: list[list[_Swap]] = []
    number = 0
    try:
        for group in servers.values():
            swaps: list[_Swap] = []
            conn = _mysql_connect(group[0][0].url, autocommit=True)
            try:
                with conn.cursor() as cursor:
                    try:
                        for ref, schema in group:
                            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {_quote_name(ref.schema)} "
                                           "CHARACTER SET utf8mb4")
                            kept = f"obslab_replaced_{token}_{number}"
                            number += 1
                            cursor.execute(f"CREATE DATABASE {_quote_name(kept)} CHARACTER SET utf8mb4")
                            swaps.append(_Swap(ref, schema, kept, _tables(cursor, ref.schema), _tables(cursor, schema)))
                        _rename_all(cursor, [(s.ref.schema, s.kept, t) for s in swaps for t in s.old_tables]
                                    + [(s.staged, s.ref.schema, t) for s in swaps for t in s.new_tables])
                    except BaseException:   # nothing moved on this server: its new schemas go
                        for swap in swaps:
                            try:
                                cursor.execute(f"DROP DATABASE IF EXISTS {_quote_name(swap.kept)}")
                            except Exception:
                                pass
                        raise
            finally:
                conn.close()
            done.append(swaps)
    except BaseException as failure:
        for swaps in reversed(done):
            try:
                _unswap(swaps)
            except Exception as exc:
                raise BackupError(f"restoring the MySQL tables failed ({failure}), and putting back those already "
                                  f"replaced failed too ({exc}): they are in schemas "
                                  f"{', '.join(s.kept for s in swaps)}") from None
        if isinstance(failure, pymysql.MySQLError):
            raise BackupError(f"moving the restored tables into their MySQL schemas failed: {failure}") from None
        raise
    # Done: what is left is tidying up, which may fail without undoing anything.
    kept = [swap.kept for swaps in done for swap in swaps if swap.old_tables]
    for swaps in done:
        for swap in swaps:
            _drop_schema(swap.ref.url, swap.staged)          # empty now
            if not swap.old_tables:
                _drop_schema(swap.ref.url, swap.kept)        # replaced nothing
    return kept


def _unswap(swaps: list[_Swap]) -> None:
    """Undo one server's swap: the restored tables back into their staged schemas, the replaced
    ones back where they were."""
    conn = _mysql_connect(swaps[0].ref.url, autocommit=True)
    try:
        with conn.cursor() as cursor:
            _rename_all(cursor, [(s.ref.schema, s.staged, t) for s in swaps for t in s.new_tables]
                        + [(s.kept, s.ref.schema, t) for s in swaps for t in s.old_tables])
            for swap in swaps:
                cursor.execute(f"DROP DATABASE IF EXISTS {_quote_name(swap.kept)}")
    finally:
        conn.close()


def _tables(cursor: Any, schema: str) -> list[str]:
    cursor.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
                   (schema,))
    return [row[0] for row in cursor.fetchall()]


# --- list, retention, schedule -----------------------------------------------------------------


@dataclass
class BackupInfo:
    path: Path
    size: int
    created_at: str | None
    scheduled: bool
    status: str            # "verified", "manifest ok" (not checked further), or what is wrong
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "size_bytes": self.size, "created_at": self.created_at,
                "scheduled": self.scheduled, "status": self.status, "ok": self.ok}


def archives(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".") and p.is_file()]


def list_backups(directory: Path, *, check: bool = False) -> list[BackupInfo]:
    """The archives in ``directory``, newest first; ``check``: verify each whole."""
    found = []
    for path in archives(directory):
        created, ok = None, False
        try:
            manifest = verify(path) if check else read_manifest(path)
            created, status, ok = manifest.get("created_at"), "verified" if check else "manifest ok", True
        except BackupError as exc:
            status = str(exc).removeprefix(f"{path}: ").removesuffix("; nothing was changed")
        found.append(BackupInfo(path, path.stat().st_size, created, SCHEDULED_TAG + SUFFIX in path.name, status, ok))
    return sorted(found, key=lambda info: (info.created_at or _iso(_stamp_time(info.path) or info.path.stat().st_mtime),
                                           info.path.name), reverse=True)


def _stamp_time(path: Path) -> float | None:
    match = _STAMP.match(path.name)
    if match is None:
        return None
    return float(calendar.timegm(time.strptime(match.group(1), "%Y%m%dT%H%M%SZ")))


def scheduled_archives(directory: Path) -> list[tuple[float, Path]]:
    """Scheduled backups, newest first, by the time in their names."""
    found = []
    for path in archives(directory):
        moment = _stamp_time(path)
        if moment is not None and path.name.endswith(SCHEDULED_TAG + SUFFIX):
            found.append((moment, path))
    return sorted(found, key=lambda item: (item[0], item[1].name), reverse=True)


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete scheduled backups beyond the newest ``keep``; manual ones are never deleted."""
    if keep < 1:
        raise BackupError("--backup-keep must be at least 1")
    removed = []
    for _moment, path in scheduled_archives(directory)[keep:]:
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def next_due(newest: float | None, every: float, started: float, last_failure: float | None = None) -> float:
    """When the next scheduled backup is due: ``every`` after the newest one; a lab without one
    gets its first a minute after the scheduler starts; a failure is retried after 10 minutes."""
    due = newest + every if newest is not None else started + min(every, SCHEDULE_FIRST_DELAY_SECONDS)
    if last_failure is not None:
        due = max(due, last_failure + min(every, SCHEDULE_RETRY_SECONDS))
    return due


def _read_last_failure(directory: Path, now: float) -> float | None:
    """When the last scheduled backup failed (kept across restarts), never later than ``now``."""
    try:
        moment = float(json.loads((directory / LAST_FAILURE_NAME).read_text())["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return min(moment, now)


def _write_last_failure(directory: Path, moment: float | None, error: str = "") -> None:
    """Keep (``moment``) or forget (None) the last failure; a file that cannot be written only
    costs the wait after a restart."""
    path = directory / LAST_FAILURE_NAME
    try:
        if moment is None:
            path.unlink(missing_ok=True)
            return
        private_dir(directory)
        partial = directory / f"{LAST_FAILURE_NAME}.{os.getpid()}.partial"
        partial.write_text(json.dumps({"at": moment, "at_utc": _iso(moment), "error": error[:500]}))
        os.replace(partial, path)
    except OSError:
        pass


def _newest(directory: Path, now: float, first_seen: dict[str, float]) -> float | None:
    """The newest scheduled backup's time; one in the future (a clock set back) counts from when
    it was first seen."""
    found = scheduled_archives(directory)
    if not found:
        return None
    moment, path = found[0]
    return first_seen.setdefault(path.name, now) if moment > now else moment


def run_schedule(data_dir: Path, every: float, keep: int, *, stop: threading.Event, say: Say = print,
                 clock: Callable[[], float] = time.time, max_runs: int | None = None) -> int:
    """Take a backup every ``every`` seconds while ``stop`` is not set, keeping the newest ``keep``
    scheduled ones; returns how many it took. Runs under supervisord (``obslab up --backup-every``):
    nothing but ``stop`` (or a signal) ends it, a failure of any kind is logged and tried again
    :data:`SCHEDULE_RETRY_SECONDS` later, across restarts too (:data:`LAST_FAILURE_NAME`)."""
    if every < SCHEDULE_MIN_SECONDS:
        raise BackupError(f"--backup-every must be at least {SCHEDULE_MIN_SECONDS:.0f}s")
    directory = backup_dir(data_dir)
    started = clock()
    last_failure = _read_last_failure(directory, started)
    first_seen: dict[str, float] = {}
    taken = 0
    say(f"scheduled backups of {data_dir}: every {every:g} s into {directory}, keeping {keep}")
    if last_failure is not None:
        say(f"the last scheduled backup failed at {_iso(last_failure)}; the next try is not before "
            f"{_iso(last_failure + min(every, SCHEDULE_RETRY_SECONDS))}")
    while not stop.is_set() and (max_runs is None or taken < max_runs):
        now = clock()
        due = next_due(_newest(directory, now, first_seen), every, started, last_failure)
        if due > now:
            stop.wait(min(due - now, 60.0))   # looks again every minute: a deleted backup, a changed clock
            continue
        try:
            result = create(data_dir, scheduled=True)
        except Exception as exc:   # whatever it is, the schedule goes on
            last_failure = clock()
            text = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
            _write_last_failure(directory, last_failure, text)
            say(f"{_iso(last_failure)} backup failed: {text}; trying again in "
                f"{min(every, SCHEDULE_RETRY_SECONDS) / 60:g} min")
            if not isinstance(exc, BackupError):
                say(traceback.format_exc().rstrip())
            continue
        taken += 1
        if last_failure is not None:
            last_failure = None
            _write_last_failure(directory, None)
        try:
            removed = prune(directory, keep)
        except Exception as exc:   # the backup is taken; the next prune may do better
            removed = []
            say(f"{_iso(clock())} pruning old backups failed: {type(exc).__name__}: {exc}")
        say(f"{_iso(clock())} backup {result.archive.name}: {_size(result.size)} in {result.seconds:.1f} s"
            + (f"; pruned {', '.join(p.name for p in removed)}" if removed else ""))
    return taken


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM (supervisord stopping the lab) and SIGINT end the schedule; a backup in progress is
    interrupted and its staging files removed."""
    def handle(_signum: int, _frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
