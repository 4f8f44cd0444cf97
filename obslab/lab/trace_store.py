"""Span storage of the native trace sink: OTLP protobuf in, rows in a SQLite file out.

A stand-in for Jaeger's storage, kept small on purpose: it stores what the OTLP request says,
prunes by age and by count, and answers the handful of queries the lab makes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, delete, func, select

from obslab.platform.db import Database

metadata = MetaData()
spans = Table(
    "spans", metadata,
    Column("trace_id", String(32), primary_key=True),
    Column("span_id", String(16), primary_key=True),
    Column("parent_span_id", String(16)),
    Column("service", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("kind", Integer, nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("status_message", Text),
    Column("attributes", Text, nullable=False),
    Column("events", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("scope", String(256)),
    Index("ix_spans_service_start", "service", "start_ns"),
    Index("ix_spans_start", "start_ns"),
)

_COLUMNS = tuple(column.name for column in spans.columns)
# A re-sent batch (exporter retry after a lost response) must not fail the import, hence OR IGNORE.
# Given to sqlite3 as it is: SQLAlchemy's compiling and per-row parameter processing of the same
# insert took a quarter of the sink's CPU, which every exported span pays.
_INSERT_OR_IGNORE = (f"INSERT OR IGNORE INTO spans ({', '.join(_COLUMNS)}) "
                     f"VALUES ({', '.join('?' * len(_COLUMNS))})")

# OTLP Status.code
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


def any_value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    if field is None:
        return None
    if field == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if field == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if field == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, field)


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


@dataclass(frozen=True)
class StoredSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    service: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    resource: dict[str, Any]
    scope: str


# Span times are stored as SQLite integers (signed 64 bits): nanoseconds up to the year 2262.
_LATEST_NS = 2**63 - 1


class SpanRejected(ValueError):
    """A span this store cannot keep; the whole request is refused (OTLP's 400)."""


def decode(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """Rows for the ``spans`` table, one per span in the request; :class:`SpanRejected` when a
    span's times cannot be stored."""
    rows = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", "unknown_service"))[:128]
        resource_json = json.dumps(resource)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name[:256]
            for span in scope_spans.spans:
                if span.start_time_unix_nano > _LATEST_NS or span.end_time_unix_nano > _LATEST_NS:
                    raise SpanRejected(f"span {span.span_id.hex()} has a start or end time past the year 2262 "
                                       f"({span.start_time_unix_nano}, {span.end_time_unix_nano} ns)")
                rows.append({
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex() or None,
                    "service": service,
                    "name": span.name[:256],
                    "kind": int(span.kind),
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "status_code": int(span.status.code),
                    "status_message": span.status.message,
                    "attributes": json.dumps(attributes(span.attributes)),
                    "events": json.dumps([
                        {"name": e.name, "time_ns": e.time_unix_nano, "attributes": attributes(e.attributes)}
                        for e in span.events
                    ]) if span.events else "[]",
                    "resource": resource_json,
                    "scope": scope,
                })
    return rows


def _stored(row: Any) -> StoredSpan:
    return StoredSpan(
        row["trace_id"], row["span_id"], row["parent_span_id"], row["service"], row["name"], row["kind"],
        row["start_ns"], row["end_ns"], row["status_code"], row["status_message"] or "",
        json.loads(row["attributes"]), json.loads(row["events"]), json.loads(row["resource"]), row["scope"] or "",
    )


class TraceStore:
    def __init__(self, db: Database, *, retention_seconds: float, max_spans: int,
                 prune_every_seconds: float = 60.0) -> None:
        self.db = db
        self.retention_ns = int(retention_seconds * 1e9)
        self.max_spans = max_spans
        self.prune_every = prune_every_seconds
        self._last_prune = 0.0
        self._prune_lock = threading.Lock()

    def add(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            values = [tuple(row[name] for name in _COLUMNS) for row in rows]
            self.db.run(lambda conn: conn.exec_driver_sql(_INSERT_OR_IGNORE, values))
        self._maybe_prune()

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < self.prune_every or not self._prune_lock.acquire(blocking=False):
            return
        try:
            self._last_prune = now
            self.prune()
        finally:
            self._prune_lock.release()

    def prune(self) -> int:
        """Drop spans past retention, then the oldest beyond ``max_spans``; returns rows removed."""
        cutoff = time.time_ns() - self.retention_ns

        def unit(conn) -> int:
            removed = conn.execute(delete(spans).where(spans.c.start_ns < cutoff)).rowcount
            excess = conn.execute(select(func.count()).select_from(spans)).scalar_one() - self.max_spans
            if excess > 0:
                oldest = select(spans.c.start_ns).order_by(spans.c.start_ns).offset(excess).limit(1)
                boundary = conn.execute(oldest).scalar()
                if boundary is not None:
                    removed += conn.execute(delete(spans).where(spans.c.start_ns < boundary)).rowcount
            return removed

        return self.db.run(unit)

    def services(self) -> list[str]:
        with self.db.connect() as conn:
            return sorted(conn.execute(select(spans.c.service).distinct()).scalars().all())

    def operations(self, service: str) -> list[str]:
        with self.db.connect() as conn:
            return sorted(conn.execute(
                select(spans.c.name).where(spans.c.service == service).distinct()
            ).scalars().all())

    def trace(self, trace_id: str) -> list[StoredSpan]:
        with self.db.connect() as conn:
            rows = conn.execute(
                select(spans).where(spans.c.trace_id == trace_id.lower().zfill(32)).order_by(spans.c.start_ns)
            ).mappings().all()
        return [_stored(row) for row in rows]

    def find_trace_ids(self, service: str, *, limit: int, start_ns: int, end_ns: int,
                       operation: str | None = None, min_duration_ns: int = 0) -> list[str]:
        condition = (spans.c.service == service) & spans.c.start_ns.between(start_ns, end_ns)
        if operation:
            condition &= spans.c.name == operation
        if min_duration_ns:
            condition &= (spans.c.end_ns - spans.c.start_ns) >= min_duration_ns
        newest = func.max(spans.c.start_ns)
        query = (select(spans.c.trace_id, newest.label("newest")).where(condition)
                 .group_by(spans.c.trace_id).order_by(newest.desc()).limit(limit))
        with self.db.connect() as conn:
            return [row.trace_id for row in conn.execute(query)]
