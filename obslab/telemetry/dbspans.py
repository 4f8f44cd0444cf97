"""Database spans: one per unit of work (a read, or a write transaction), not one per statement.

A transfer ran 15 SQL statements in four services, and each was a span of its own: 15 of the
transfer's 27 spans, each 20-50 us of SQL wrapped in a span that cost more than the statement
to create, redact, encode, export and store (``obslab bench profile``, obslab/bench/README.md).
A statement span also said little a person acts on; what matters in a trace is how long the
service spent in its database, including the wait for SQLite's write lock, and what it ran.

So one CLIENT span covers each ``Database.connect()`` and ``Database.transaction()`` block:
its duration is the BEGIN (the lock wait), every statement and the COMMIT; it is named after its
statements (``db.query.summary``, e.g. ``SELECT accounts, INSERT movements, UPDATE accounts``),
holds their text in ``db.query.text`` (parameters are never rendered: ``hide_parameters``, and
the exporter redacts the rest) and their number in ``db.operation.batch.size``. A unit that
fails records the exception and an error status; each retry of a contended unit is a span.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, ContextManager

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Engine, event
from sqlalchemy.exc import SQLAlchemyError

from obslab.telemetry.tracing import tracing_enabled

MAX_QUERY_TEXT = 4096
MAX_SUMMARY_PARTS = 4

_statements: ContextVar[list[str] | None] = ContextVar("obslab_db_statements", default=None)
_TABLE_AFTER = {"SELECT": r"\bFROM", "INSERT": r"\bINTO", "UPDATE": r"^\s*UPDATE", "DELETE": r"\bFROM"}
_NAME = r"\s+[`\"]?([A-Za-z_][A-Za-z0-9_]*)"


def summarise(statement: str) -> str:
    """``INSERT INTO movements (...) VALUES (...)`` -> ``INSERT movements``; other statements by
    their first word (``PRAGMA``, ``CREATE``)."""
    words = statement.split(None, 1)
    if not words:
        return ""
    operation = words[0].upper()
    after = _TABLE_AFTER.get(operation)
    if after is None:
        return operation
    match = re.search(after + _NAME, statement, re.IGNORECASE)
    return f"{operation} {match.group(1)}" if match else operation


def query_summary(statements: list[str], namespace: str) -> str:
    """The distinct operations in order of first use, at most a few: a low-cardinality span name."""
    parts: list[str] = []
    for statement in statements:
        part = summarise(statement)
        if part and part not in parts:
            parts.append(part)
    if not parts:
        return namespace
    more = len(parts) - MAX_SUMMARY_PARTS
    return ", ".join(parts[:MAX_SUMMARY_PARTS]) + (f" (+{more})" if more > 0 else "")


class DatabaseTracer:
    """Spans for the units of work of one engine; ``unit()`` wraps a connect or transaction block."""

    def __init__(self, engine: Engine, namespace: str) -> None:
        self.namespace = namespace
        self._engine = engine
        self._attributes: dict[str, Any] | None = None
        self._tracer = trace.get_tracer("obslab.db")
        self.enabled = tracing_enabled()
        if self.enabled:
            event.listen(engine, "before_cursor_execute", _collect)

    @property
    def attributes(self) -> dict[str, Any]:
        # Read at the first unit, not at start-up: SQLAlchemy learns that a mysql:// server is
        # MariaDB on its first connection.
        if self._attributes is None:
            url = self._engine.url
            attributes: dict[str, Any] = {"db.system.name": _system(self._engine), "db.namespace": self.namespace}
            if url.host:
                attributes["server.address"] = url.host
                if url.port:
                    attributes["server.port"] = url.port
            self._attributes = attributes
        return self._attributes

    @contextmanager
    def _span(self) -> Iterator[None]:
        # Only the database's own errors mark the span: a unit of work that raises to roll back a
        # refused transfer (insufficient funds) is the database working as asked.
        with self._tracer.start_as_current_span(self.namespace, kind=SpanKind.CLIENT, attributes=self.attributes,
                                                record_exception=False, set_status_on_exception=False) as span:
            if not span.is_recording():      # no SDK here (the trace sink), or not sampled
                yield
                return
            statements: list[str] = []
            token = _statements.set(statements)
            try:
                yield
            except SQLAlchemyError as exc:
                span.record_exception(exc)
                # The driver's own words ("UNIQUE constraint failed: users.username"); the engine
                # renders no parameter into them (hide_parameters), redaction runs at export.
                message = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0][:300]
                span.set_status(Status(StatusCode.ERROR, message))
                span.set_attribute("error.type", type(exc).__name__)
                raise
            finally:
                _statements.reset(token)
                summary = query_summary(statements, self.namespace)
                span.update_name(summary)
                if statements:
                    span.set_attribute("db.query.summary", summary)
                    span.set_attribute("db.query.text", "; ".join(statements)[:MAX_QUERY_TEXT])
                    span.set_attribute("db.operation.batch.size", len(statements))

    def unit(self) -> ContextManager[None]:
        return self._span() if self.enabled else nullcontext()


def _collect(_conn, _cursor, statement: str, _parameters, _context, _executemany) -> None:
    statements = _statements.get()
    if statements is not None:
        statements.append(" ".join(statement.split()))


def _system(engine: Engine) -> str:
    name = engine.dialect.name
    return "mariadb" if getattr(engine.dialect, "is_mariadb", False) else name
