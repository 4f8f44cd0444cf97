"""One data-layer path for SQLite and MySQL/MariaDB (database per service).

Where a service's database lives, first match wins:

1. an explicit URL (argument),
2. ``OBSLAB_<SERVICE>_DB_URL``: a full URL for this service,
3. ``OBSLAB_DB_URL``: a MySQL/MariaDB *server*; the service uses database ``<name>_<service>``
   on it, where ``<name>`` is the database in the URL or ``obslab``, created on first start,
4. a SQLite file ``<data dir>/db/<service>.sqlite3``.

Writes go through :meth:`Database.transaction`, which takes the write lock up front on SQLite
(``BEGIN IMMEDIATE``, so two writers never deadlock upgrading a read lock) and retries the whole
unit of work when MySQL reports a deadlock or lock wait timeout.

Every error the driver raises is reported by kind (:func:`db_error_kind`) to the ``on_error``
callback, which the service turns into ``db_errors_total``; the hook is SQLAlchemy's
``handle_error`` event, so a statement that succeeds pays nothing for it.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from obslab import secrets, settings
from obslab.conventions import DbErrorKind
from obslab.telemetry.dbspans import DatabaseTracer

log = logging.getLogger(__name__)

T = TypeVar("T")

_MYSQL_DEADLOCK = 1213
_MYSQL_LOCK_WAIT_TIMEOUT = 1205
# Server gone, refused, unreachable, too many connections, connection killed (MariaDB): the ones
# SQLAlchemy's is_disconnect does not already cover when they come back from a statement.
_MYSQL_CONNECTION_ERRORS = frozenset({1040, 1053, 1927, 2002, 2003, 2005, 2006, 2013, 2055, 4031})
_SQLITE_WAITED = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_DB_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def resolve_url(service: str, explicit: str | None = None) -> URL:
    own = settings.SERVICE_DB_URL.of(service)
    raw = explicit or own.get()
    if raw:
        return _with_password(service, _with_pymysql(make_url(raw)))
    server = settings.DB_URL.get()
    if server:
        url = _with_pymysql(make_url(server))
        if url.get_backend_name() not in ("mysql", "mariadb"):
            raise settings.ConfigError(
                f"{settings.DB_URL.name} must point at a MySQL/MariaDB server (mysql://user:pass@host:port/), "
                f"got {url.render_as_string(hide_password=True)}; use {own.name} "
                "for another kind of database"
            )
        return url.set(database=f"{url.database or 'obslab'}_{service.replace('-', '_')}")
    path = settings.data_dir() / "db" / f"{service}.sqlite3"
    return URL.create("sqlite", database=str(path))


def _with_pymysql(url: URL) -> URL:
    if url.drivername in ("mysql", "mariadb"):
        return url.set(drivername=f"{url.drivername}+pymysql")
    return url


def _with_password(service: str, url: URL) -> URL:
    """A MySQL URL without a password takes the service's own one from the lab's secrets
    (compose: one database user per service, its password generated on first start)."""
    if url.get_backend_name() not in ("mysql", "mariadb") or url.password:
        return url
    password = secrets.database_password(service)
    return url.set(password=password) if password else url


def is_contention(exc: BaseException) -> bool:
    """A deadlock or lock timeout: the transaction did nothing and can run again."""
    if not isinstance(exc, OperationalError):
        return False
    orig = exc.orig
    code = orig.args[0] if orig is not None and orig.args else None
    return code in (_MYSQL_DEADLOCK, _MYSQL_LOCK_WAIT_TIMEOUT) or "database is locked" in str(exc)


def _mysql_code(exc: BaseException | None) -> int | None:
    code = exc.args[0] if exc is not None and exc.args else None
    return code if isinstance(code, int) else None


def db_error_kind(exc: DBAPIError, *, connecting: bool = False, disconnect: bool = False) -> DbErrorKind:
    """The ``kind`` label of a database error, first match wins.

    ``connection`` while opening a connection, when SQLAlchemy judged it a disconnect, or for a
    MySQL connection error code; ``deadlock`` for MySQL 1213; ``timeout`` for MySQL 1205 (lock
    wait) and SQLite BUSY/LOCKED ("database is locked"); ``integrity`` for any IntegrityError;
    ``other`` for the rest.
    """
    orig = exc.orig
    code = _mysql_code(orig)
    if connecting or disconnect or code in _MYSQL_CONNECTION_ERRORS:
        return DbErrorKind.CONNECTION
    if code == _MYSQL_DEADLOCK:
        return DbErrorKind.DEADLOCK
    # Extended SQLite codes (e.g. BUSY_SNAPSHOT) carry the primary code in the low byte.
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if code == _MYSQL_LOCK_WAIT_TIMEOUT or (sqlite_code is not None and sqlite_code & 0xFF in _SQLITE_WAITED):
        return DbErrorKind.TIMEOUT
    if isinstance(exc, IntegrityError):
        return DbErrorKind.INTEGRITY
    return DbErrorKind.OTHER


def report_errors(engine: Engine, on_error: Callable[[DbErrorKind], None]) -> None:
    """Call ``on_error(kind)`` for every DBAPI error ``engine`` raises (connecting included).

    Left out: failed pool pre-pings (the pool replaces the stale connection and the caller never
    sees them; if the replacement fails too, that connect error counts), and errors SQLAlchemy
    provokes and catches itself, such as MySQL's ``DESCRIBE`` probe for a missing table at
    schema creation, which it marks with the ``skip_user_error_events`` execution option.
    """

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        exc = context.sqlalchemy_exception
        if context.is_pre_ping or not isinstance(exc, DBAPIError):
            return  # not a database error: a bug in the caller, or an interrupt
        execution = context.execution_context
        if execution is not None and execution.execution_options.get("skip_user_error_events"):
            return
        try:
            # SQLAlchemy documents connection=None only for a failure to connect.
            on_error(db_error_kind(exc, connecting=context.connection is None, disconnect=context.is_disconnect))
        except Exception:  # counting must never replace the database error the caller should see
            log.exception("reporting a database error failed")


class Database:
    """A service's own database: engine, schema creation, transactions with contention retry.

    ``on_retry()`` runs before a contended transaction runs again, ``on_error(kind)`` for every
    error the driver raises (see :func:`report_errors`).

    >>> kinds = []
    >>> db = Database("demo", MetaData(), "sqlite:////tmp/demo.sqlite3", on_error=kinds.append)
    >>> with db.connect() as conn:
    ...     conn.execute(text("SELECT * FROM missing"))  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    sqlalchemy.exc.OperationalError: no such table: missing
    >>> kinds
    [<DbErrorKind.OTHER: 'other'>]
    """

    def __init__(
        self,
        service: str,
        metadata: MetaData,
        url: str | None = None,
        *,
        on_retry: Callable[[], None] | None = None,
        on_error: Callable[[DbErrorKind], None] | None = None,
        max_attempts: int = 6,
    ) -> None:
        self.service = service
        self.url = resolve_url(service, url)
        self.metadata = metadata
        self._on_retry = on_retry
        self._max_attempts = max_attempts
        self.engine = self._create_engine()
        if on_error is not None:
            report_errors(self.engine, on_error)
        self._spans = DatabaseTracer(self.engine, self.namespace)
        self._create_schema()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def namespace(self) -> str:
        """The database's name: the MySQL schema, or the SQLite file's stem (``accounts``)."""
        name = self.url.database or self.service
        return Path(name).stem if self.url.get_backend_name() == "sqlite" else name

    def describe(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def _create_engine(self) -> Engine:
        if self.url.get_backend_name() == "sqlite":
            return self._sqlite_engine()
        if self.url.get_backend_name() in ("mysql", "mariadb"):
            self._create_mysql_database()
            return create_engine(
                self.url,
                hide_parameters=True,
                isolation_level="READ COMMITTED",
                pool_pre_ping=True,
                pool_recycle=1800,
                pool_size=10,
                max_overflow=20,
                connect_args={"connect_timeout": 5, "read_timeout": 30, "write_timeout": 30},
            )
        return create_engine(self.url, pool_pre_ping=True, hide_parameters=True)

    def _sqlite_engine(self) -> Engine:
        if self.url.database and self.url.database != ":memory:":
            # 0600 from the first byte; SQLite gives its -wal and -shm files the same mode.
            secrets.private_file(Path(self.url.database))
        engine = create_engine(
            self.url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=10, max_overflow=20,
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:
            # Take transaction control away from the sqlite3 module, so that the "begin" hook
            # below decides how a transaction starts.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # On the driver connection, not through SQLAlchemy: a wait for the write lock shows as
            # time in the unit of work's span, not as a statement of its own.
            immediate = conn.get_execution_options().get("obslab_write", False)
            conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def _create_mysql_database(self) -> None:
        name = self.url.database
        if not name or not _DB_NAME.match(name):
            raise settings.ConfigError(f"database name {name!r} must match [A-Za-z0-9_]{{1,64}}")
        # URL.set() ignores None, so drop the database with the NamedTuple API.
        server = create_engine(self.url._replace(database=None), pool_pre_ping=True)
        try:
            with server.begin() as conn:
                conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
        finally:
            server.dispose()

    def _create_schema(self) -> None:
        self.metadata.create_all(self.engine)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads; each statement sees committed data."""
        with self._spans.unit(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any exception. One span
        covers it, the wait for the write lock included (obslab/telemetry/dbspans.py)."""
        with self._spans.unit(), self.engine.connect().execution_options(obslab_write=True) as conn:
            with conn.begin():
                yield conn

    def run(self, unit_of_work: Callable[[Connection], T]) -> T:
        """Run ``unit_of_work`` in a write transaction, again from scratch on contention."""
        retrying = Retrying(
            retry=retry_if_exception(is_contention),
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_random_exponential(multiplier=0.005, max=0.25),
            before_sleep=lambda _state: self._on_retry and self._on_retry(),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                with self.transaction() as conn:
                    return unit_of_work(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def drop_everything(self) -> None:
        """Tests only: remove this service's tables (and its MySQL database)."""
        self.metadata.drop_all(self.engine)
        if self.url.get_backend_name() in ("mysql", "mariadb"):
            with self.engine.begin() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{self.url.database}`"))
        self.engine.dispose()
