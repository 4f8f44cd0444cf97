"""fault-injector: the lab's fault control plane, like feature flags for breakage.

One place to set, list and clear faults (``/api/v1/faults``). Every fault expires (10 minutes
unless asked otherwise; never without saying ``no_expiry``), so a forgotten fault rolls itself
back. Every change is in an audit log (who, what, when), and ``fault_active{fault,target}``
shows each active fault to Prometheus, so dashboards and drills can mark injection times.

The processes that apply faults poll ``/internal/faults`` (see :mod:`obslab.faults.board`);
nothing here calls them, so a target that is down cannot block setting or clearing a fault.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any

from flask import Flask, g, request
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    insert,
    or_,
    select,
    update,
)

from obslab import conventions as c
from obslab.faults.model import POLL_PATH, Fault, FaultRequest
from obslab.platform.app import ServiceContext, create_service_app, parse_body, query_int
from obslab.platform.clock import now_ms
from obslab.platform.db import Database
from obslab.platform.errors import ApiError
from obslab.platform.ids import new_id

log = logging.getLogger(__name__)

API = f"{c.API_PREFIX}/faults"
SWEEP_SECONDS = 1.0

ACTIVE, CLEARED, EXPIRED, REPLACED = "active", "cleared", "expired", "replaced"

metadata = MetaData()
faults_table = Table(
    "faults", metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("target", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger),          # NULL: asked for no expiry
    Column("ended_at_ms", BigInteger),
    Column("state", String(16), nullable=False),
    Column("actor", String(120), nullable=False),
    Column("reason", String(500), nullable=False),
    Index("ix_faults_state", "state"),
)
audit_table = Table(
    "fault_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("action", String(16), nullable=False),
    Column("fault_id", String(40), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("target", String(64), nullable=False),
    Column("actor", String(120), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_fault_audit_at", "at_ms"),
)


def create_app(db_url: str | None = None) -> Flask:
    return create_service_app(c.FAULT_INJECTOR, _routes, metadata=metadata, db_url=db_url,
                              metric_specs=[c.FAULT_EVENTS])


_DECLARED_ACTOR = re.compile(r"[^\x21-\x7e ]")


def _actor() -> str:
    """Who did it: the authenticated principal, then, in brackets, what the caller says of itself
    (``operator (cli:alice@host)``). The principal comes first, so a caller cannot pass for
    ``system:expiry`` or anyone else."""
    declared = _DECLARED_ACTOR.sub("", request.headers.get(c.HEADER_ACTOR, "")).strip()[:80]
    return f"{g.principal} ({declared})" if declared else g.principal


def _fault(row: Any) -> Fault:
    return Fault(
        id=row.id, kind=c.FaultKind(row.kind), target=row.target, params=json.loads(row.params),
        created_at=row.created_at_ms / 1000,
        expires_at=None if row.expires_at_ms is None else row.expires_at_ms / 1000,
        actor=row.actor, reason=row.reason,
    )


def _shown(row: Any) -> dict[str, Any]:
    state = row.state
    if state == ACTIVE and row.expires_at_ms is not None and row.expires_at_ms <= now_ms():
        state = EXPIRED  # the sweeper has not run yet; the answer must not lag behind the clock
    return {**_fault(row).to_json(), "state": state,
            "ended_at": None if row.ended_at_ms is None else row.ended_at_ms / 1000}


def _active_now(now: int):
    return and_(faults_table.c.state == ACTIVE,
                or_(faults_table.c.expires_at_ms.is_(None), faults_table.c.expires_at_ms > now))


class FaultStore:
    """Faults and their audit trail in the injector's own database."""

    def __init__(self, db: Database, ctx: ServiceContext) -> None:
        self.db = db
        self.ctx = ctx

    def _audit(self, conn: Connection, action: str, row: Any, actor: str, **detail: Any) -> None:
        conn.execute(insert(audit_table).values(
            at_ms=now_ms(), action=action, fault_id=row.id, kind=row.kind, target=row.target,
            actor=actor, detail=json.dumps(detail, sort_keys=True),
        ))
        self.ctx.metrics.count(c.FAULT_EVENTS, fault=row.kind, action=action)

    def _end(self, conn: Connection, rows: list[Any], state: str, actor: str) -> None:
        at = now_ms()
        for row in rows:
            conn.execute(update(faults_table).where(faults_table.c.id == row.id)
                         .values(state=state, ended_at_ms=at))
            self._audit(conn, state, row, actor)

    def set(self, wanted: FaultRequest, actor: str) -> dict[str, Any]:
        created = now_ms()
        params = wanted.params()
        values = {
            "id": new_id("flt_"), "kind": wanted.kind.value, "target": wanted.target,
            "params": json.dumps(params, sort_keys=True), "created_at_ms": created,
            "expires_at_ms": None if wanted.ttl_seconds is None else created + wanted.ttl_seconds * 1000,
            "ended_at_ms": None, "state": ACTIVE, "actor": actor, "reason": wanted.reason,
        }

        def unit(conn: Connection) -> Any:
            # Setting a fault again replaces the one of the same kind on the same target and route,
            # as flipping a flag would; faults on other routes of the target stay.
            same = conn.execute(select(faults_table).where(
                _active_now(created), faults_table.c.kind == values["kind"],
                faults_table.c.target == values["target"],
            )).all()
            self._end(conn, [r for r in same if json.loads(r.params).get("route") == params.get("route")],
                      REPLACED, actor)
            conn.execute(insert(faults_table).values(**values))
            row = conn.execute(select(faults_table).where(faults_table.c.id == values["id"])).one()
            self._audit(conn, "set", row, actor, params=params, ttl_seconds=wanted.ttl_seconds,
                        reason=wanted.reason)
            return row

        row = self.db.run(unit)
        log.info("fault set", extra={"fault_id": row.id, "kind": row.kind, "target": row.target,
                                     "params": params, "actor": actor})
        return _shown(row)

    def active(self) -> list[dict[str, Any]]:
        with self.db.connect() as conn:
            rows = conn.execute(select(faults_table).where(_active_now(now_ms()))
                                .order_by(faults_table.c.created_at_ms.desc())).all()
        return [_shown(r) for r in rows]

    def everything(self, limit: int) -> list[dict[str, Any]]:
        with self.db.connect() as conn:
            rows = conn.execute(select(faults_table).order_by(faults_table.c.created_at_ms.desc())
                                .limit(limit)).all()
        return [_shown(r) for r in rows]

    def get(self, fault_id: str) -> dict[str, Any]:
        with self.db.connect() as conn:
            row = conn.execute(select(faults_table).where(faults_table.c.id == fault_id)).first()
        if row is None:
            raise ApiError(404, "fault_not_found", f"no fault {fault_id!r}; list them with GET {API}")
        return _shown(row)

    def clear(self, fault_id: str, actor: str) -> dict[str, Any]:
        def unit(conn: Connection) -> Any:
            row = conn.execute(select(faults_table).where(faults_table.c.id == fault_id)).first()
            if row is None:
                raise ApiError(404, "fault_not_found", f"no fault {fault_id!r}; list them with GET {API}")
            if row.state == ACTIVE:
                self._end(conn, [row], CLEARED, actor)
            return conn.execute(select(faults_table).where(faults_table.c.id == fault_id)).one()

        return _shown(self.db.run(unit))

    def clear_all(self, actor: str) -> list[str]:
        def unit(conn: Connection) -> list[str]:
            rows = conn.execute(select(faults_table).where(_active_now(now_ms()))).all()
            self._end(conn, rows, CLEARED, actor)
            return [r.id for r in rows]

        return self.db.run(unit)

    def expire_due(self) -> int:
        """Mark faults past their expiry as expired (an audit line each); returns how many."""
        def due(conn: Connection) -> list[Any]:
            return conn.execute(select(faults_table).where(
                faults_table.c.state == ACTIVE, faults_table.c.expires_at_ms.is_not(None),
                faults_table.c.expires_at_ms <= now_ms(),
            )).all()

        # Runs every second: take the write lock only when something is due.
        with self.db.connect() as conn:
            if not due(conn):
                return 0

        def unit(conn: Connection) -> int:
            rows = due(conn)
            self._end(conn, rows, EXPIRED, "system:expiry")
            return len(rows)

        return self.db.run(unit)

    def audit(self, limit: int) -> list[dict[str, Any]]:
        with self.db.connect() as conn:
            rows = conn.execute(select(audit_table).order_by(audit_table.c.id.desc()).limit(limit)).all()
        return [{"at": r.at_ms / 1000, "action": r.action, "fault_id": r.fault_id, "kind": r.kind,
                 "target": r.target, "actor": r.actor, **json.loads(r.detail)} for r in rows]


class ActiveFaultsCollector:
    """``fault_active{fault,target}`` read from the store at scrape time, so it is never stale."""

    def __init__(self, store: FaultStore) -> None:
        self.store = store

    def describe(self):
        return [GaugeMetricFamily(c.FAULT_ACTIVE.name, c.FAULT_ACTIVE.help, labels=c.FAULT_ACTIVE.labels)]

    def collect(self):
        family = GaugeMetricFamily(c.FAULT_ACTIVE.name, c.FAULT_ACTIVE.help, labels=c.FAULT_ACTIVE.labels)
        try:
            active = self.store.active()
        except Exception:  # a scrape must not fail because the database hiccuped
            log.exception("could not read active faults for /metrics")
            active = []
        for pair in sorted({(f["kind"], f["target"]) for f in active}):
            family.add_metric(list(pair), 1.0)
        yield family


def _start_sweeper(store: FaultStore) -> None:
    def run() -> None:
        while True:
            time.sleep(SWEEP_SECONDS)
            try:
                expired = store.expire_due()
                if expired:
                    log.info("faults expired", extra={"count": expired})
            except Exception:
                log.exception("expiring faults failed; retrying")

    threading.Thread(target=run, name="fault-expiry", daemon=True).start()


def _routes(app: Flask, ctx: ServiceContext) -> None:
    assert ctx.db is not None
    store = FaultStore(ctx.db, ctx)
    ctx.metrics.registry.register(ActiveFaultsCollector(store))
    _start_sweeper(store)

    @app.post(API)
    def set_fault():
        return store.set(parse_body(FaultRequest), _actor()), 201

    @app.get(API)
    def list_faults():
        state = request.args.get("state", ACTIVE)
        if state == ACTIVE:
            return store.active()
        if state == "all":
            return store.everything(query_int("limit", 100, 1, 1000))
        raise ApiError(400, "invalid_state", "state must be 'active' (default) or 'all'")

    @app.get(POLL_PATH)
    def poll_faults():
        return store.active()

    @app.get(f"{API}/audit")
    def audit_log():
        return store.audit(query_int("limit", 100, 1, 1000))

    @app.get(f"{API}/<fault_id>")
    def get_fault(fault_id: str):
        return store.get(fault_id)

    @app.delete(f"{API}/<fault_id>")
    def clear_fault(fault_id: str):
        return store.clear(fault_id, _actor())

    @app.delete(API)
    def clear_all_faults():
        return {"cleared": store.clear_all(_actor())}
