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
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from obslab import settings
from obslab.telemetry import instrument_engine

log = logging.getLogger(__name__)

T = TypeVar("T")

_MYSQL_DEADLOCK = 1213
_MYSQL_LOCK_WAIT_TIMEOUT = 1205
_DB_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def resolve_url(service: str, explicit: str | None = None) -> URL:
    raw = explicit or os.environ.get(f"OBSLAB_{settings.env_key(service)}_DB_URL")
    if raw:
        return _with_pymysql(make_url(raw))
    server = os.environ.get("OBSLAB_DB_URL")
    if server:
        url = _with_pymysql(make_url(server))
        if url.get_backend_name() not in ("mysql", "mariadb"):
            raise settings.ConfigError(
                f"OBSLAB_DB_URL must point at a MySQL/MariaDB server (mysql://user:pass@host:port/), "
                f"got {url.render_as_string(hide_password=True)}; use OBSLAB_{settings.env_key(service)}_DB_URL "
                "for another kind of database"
            )
        return url.set(database=f"{url.database or 'obslab'}_{service.replace('-', '_')}")
    path = settings.data_dir() / "db" / f"{service}.sqlite3"
    return URL.create("sqlite", database=str(path))


def _with_pymysql(url: URL) -> URL:
    if url.drivername in ("mysql", "mariadb"):
        return url.set(drivername=f"{url.drivername}+pymysql")
    return url


def is_contention(exc: BaseException) -> bool:
    """A deadlock or lock timeout: the transaction did nothing and can run again."""
    if not isinstance(exc, OperationalError):
        return False
    orig = exc.orig
    code = orig.args[0] if orig is not None and orig.args else None
    return code in (_MYSQL_DEADLOCK, _MYSQL_LOCK_WAIT_TIMEOUT) or "database is locked" in str(exc)


class Database:
    """A service's own database: engine, schema creation, transactions with contention retry."""

    def __init__(
        self,
        service: str,
        metadata: MetaData,
        url: str | None = None,
        *,
        on_retry: Callable[[], None] | None = None,
        max_attempts: int = 6,
    ) -> None:
        self.service = service
        self.url = resolve_url(service, url)
        self.metadata = metadata
        self._on_retry = on_retry
        self._max_attempts = max_attempts
        self.engine = self._create_engine()
        instrument_engine(self.engine)
        self._create_schema()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def _create_engine(self) -> Engine:
        if self.url.get_backend_name() == "sqlite":
            return self._sqlite_engine()
        if self.url.get_backend_name() in ("mysql", "mariadb"):
            self._create_mysql_database()
            return create_engine(
                self.url,
                isolation_level="READ COMMITTED",
                pool_pre_ping=True,
                pool_recycle=1800,
                pool_size=10,
                max_overflow=20,
                connect_args={"connect_timeout": 5, "read_timeout": 30, "write_timeout": 30},
            )
        return create_engine(self.url, pool_pre_ping=True)

    def _sqlite_engine(self) -> Engine:
        if self.url.database and self.url.database != ":memory:":
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            self.url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=10, max_overflow=20
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
            # On the driver connection, not through SQLAlchemy: a BEGIN is not worth a span of its
            # own (it would be a quarter of all database spans); a wait for the write lock shows
            # as time in the enclosing span.
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
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
        with self.engine.connect().execution_options(obslab_write=True) as conn:
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
