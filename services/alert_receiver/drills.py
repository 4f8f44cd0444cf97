"""alert-receiver: drill reports and drill start/end events.

``obslab drill run NAME`` posts each run's report here (``POST /api/v1/drills``) and tells when a
drill starts and ends (``POST /api/v1/drills/events``), so that the people watching the
notifications page see that the pages arriving are a drill's, and every run's report stays
readable in the lab: ``GET /drills`` (list), ``GET /drills/<run_id>`` (the report as a page),
``GET /api/v1/drills`` and ``GET /api/v1/drills/<run_id>`` (JSON).

* posting needs the operator's control token (obslab/topology.py); Alertmanager's is refused;
* a report is validated minimally (``run_id``, ``name``, ``passed``, ``started_at``); the rest
  is stored exactly as sent and rendered defensively (services/alert_receiver/drill_pages.py);
* the same ``run_id`` (or the same run's same event) posted again replaces the earlier one;
* a report body may be 2 MiB (``MAX_REPORT_BYTES``; every other route keeps its own limit);
* reports are kept by count (``$OBSLAB_RECEIVER_MAX_DRILL_REPORTS``, 500), the oldest runs
  pruned with the insert that overflows it; events are kept four times as many.
"""

from __future__ import annotations

import html
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from flask import Flask, Response, g, request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.mysql import LONGTEXT
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge

from obslab import conventions as c
from obslab import settings
from obslab.platform.app import ServiceContext, query_int
from obslab.platform.clock import now_ms
from obslab.platform.errors import ApiError, validation_error
from obslab.services.alert_receiver.drill_pages import render_index, render_report, report_path

log = logging.getLogger(__name__)

DRILLS_API_PATH = f"{c.API_PREFIX}/drills"
DRILL_EVENTS_PATH = f"{DRILLS_API_PATH}/events"
DRILL_REPORT_API_PATH = f"{DRILLS_API_PATH}/<run_id>"
DRILLS_PAGE_PATH = "/drills"
DRILL_REPORT_PAGE_PATH = "/drills/<run_id>"
# Routes whose body may be larger than the receiver's webhook limit: (method, Flask rule).
LARGE_BODY_ROUTES = frozenset({("POST", DRILLS_API_PATH)})

# A report holds a timeline with a few series of a few hundred points: far below 2 MiB.
MAX_REPORT_BYTES = 2 * 1024 * 1024
EVENTS_PER_REPORT = 4
FRONT_PAGE_EVENTS = 20
INDEX_ROWS = 500
_HTML = "text/html; charset=utf-8"

RUN_ID = re.compile(r"[A-Za-z0-9T:._-]{1,120}")       # fullmatch: "$" would let "x\n" through
# A drill's name, as the drill files spell it (obslab/drills/model.py).


# --- what is posted -----------------------------------------------------------------------------


def _run_id(value: str) -> str:
    if not RUN_ID.fullmatch(value):
        raise ValueError("must be 1-120 letters, digits, 'T', ':', '.', '_' or '-'")
    return value


def _drill_name(value: str) -> str:
    if not c.DRILL_NAME.fullmatch(value):
        raise ValueError("must be a drill name: lower-case words joined by '-' (2-63 characters)")
    return value


class DrillReport(BaseModel):
    """What a report must have to be stored and listed; every other field is kept as sent."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    name: str
    passed: StrictBool
    started_at: float = Field(strict=True, allow_inf_nan=False)

    @field_validator("run_id")
    @classmethod
    def _check_run_id(cls, value: str) -> str:
        return _run_id(value)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _drill_name(value)


class DrillEvent(BaseModel):
    """A drill started or ended (``passed``: its verdict at the end, null when not scored)."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    drill: str
    event: Literal["start", "end"]
    at: float = Field(strict=True, allow_inf_nan=False)
    passed: StrictBool | None = None

    @field_validator("run_id")
    @classmethod
    def _check_run_id(cls, value: str) -> str:
        return _run_id(value)

    @field_validator("drill")
    @classmethod
    def _check_drill(cls, value: str) -> str:
        return _drill_name(value)


# --- storage ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrillTables:
    reports: Table
    events: Table


def define_tables(metadata: MetaData) -> DrillTables:
    """The drill tables in the receiver's ``metadata``: created with its other tables at start-up
    (a database from before drills gets them on its next start)."""
    payload = Text().with_variant(LONGTEXT(), "mysql", "mariadb")
    reports = Table(
        "drill_reports", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", String(120), nullable=False),
        Column("name", String(64), nullable=False),
        Column("title", String(300), nullable=True),
        Column("profile", String(64), nullable=True),
        Column("passed", Boolean, nullable=False),
        Column("started_at", Double, nullable=False),
        Column("stored_at_ms", BigInteger, nullable=False),
        Column("report", payload, nullable=False),        # exactly what the runner sent
        Index("ux_drill_reports_run_id", "run_id", unique=True),
        Index("ix_drill_reports_started_at", "started_at"),
    )
    events = Table(
        "drill_events", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", String(120), nullable=False),
        Column("drill", String(64), nullable=False),
        Column("event", String(8), nullable=False),
        Column("at", Double, nullable=False),
        Column("passed", Boolean, nullable=True),
        Column("received_at_ms", BigInteger, nullable=False),
        Index("ux_drill_events_run_event", "run_id", "event", unique=True),
    )
    return DrillTables(reports, events)


def _short_text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


class DrillStore:
    """Drill reports (one per ``run_id``) and start/end events, kept by count."""

    def __init__(self, db, tables: DrillTables, *, max_reports: int | None = None) -> None:
        self.db = db
        self.tables = tables
        self.max_reports = max_reports or settings.RECEIVER_MAX_DRILL_REPORTS.get()
        self.max_events = EVENTS_PER_REPORT * self.max_reports

    def _replace(self, unit) -> Any:
        # Two posts of one run at once: the second insert meets the unique index; run it again,
        # and it replaces the first.
        try:
            return self.db.run(unit)
        except IntegrityError:
            return self.db.run(unit)

    def put(self, report: DrillReport, raw: dict[str, Any]) -> bool:
        """Store (or replace) a report; True when it replaced one."""
        t = self.tables.reports
        row = {
            "run_id": report.run_id, "name": report.name, "passed": report.passed,
            "started_at": report.started_at, "stored_at_ms": now_ms(),
            "title": _short_text(raw.get("title"), 300), "profile": _short_text(raw.get("profile"), 64),
            "report": json.dumps(raw, allow_nan=False),
        }

        def unit(conn: Connection) -> bool:
            replaced = conn.execute(delete(t).where(t.c.run_id == report.run_id)).rowcount > 0
            conn.execute(insert(t).values(**row))
            self._prune_reports(conn)
            return replaced

        return self._replace(unit)

    def _prune_reports(self, conn: Connection) -> None:
        t = self.tables.reports
        if (conn.execute(select(func.count()).select_from(t)).scalar() or 0) <= self.max_reports:
            return
        doomed = [r.id for r in conn.execute(select(t.c.id).order_by(t.c.started_at.desc(), t.c.id.desc())
                                             .offset(self.max_reports)).all()]
        if doomed:
            conn.execute(delete(t).where(t.c.id.in_(doomed)))
            log.info("drill reports pruned", extra={"deleted": len(doomed)})

    def get(self, run_id: str) -> str | None:
        """The stored report (its JSON text), or None."""
        if not RUN_ID.fullmatch(run_id):
            return None
        t = self.tables.reports
        with self.db.connect() as conn:
            return conn.execute(select(t.c.report).where(t.c.run_id == run_id)).scalar()

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        t = self.tables.reports
        query = (select(t.c.run_id, t.c.name, t.c.title, t.c.passed, t.c.profile, t.c.started_at)
                 .order_by(t.c.started_at.desc(), t.c.id.desc()).limit(limit))
        with self.db.connect() as conn:
            return [{"run_id": r.run_id, "name": r.name, "title": r.title, "passed": bool(r.passed),
                     "profile": r.profile, "started_at": r.started_at} for r in conn.execute(query).all()]

    def add_event(self, event: DrillEvent) -> None:
        t = self.tables.events
        row = {"run_id": event.run_id, "drill": event.drill, "event": event.event, "at": event.at,
               "passed": event.passed, "received_at_ms": now_ms()}

        def unit(conn: Connection) -> None:
            conn.execute(delete(t).where(t.c.run_id == event.run_id, t.c.event == event.event))
            conn.execute(insert(t).values(**row))
            newest = conn.execute(select(func.max(t.c.id))).scalar() or 0
            if newest > self.max_events:   # ids only grow: nothing to count below the bound
                conn.execute(delete(t).where(t.c.id <= newest - self.max_events))

        self._replace(unit)

    def events(self, limit: int = FRONT_PAGE_EVENTS) -> list[dict[str, Any]]:
        """The latest events, newest first."""
        t = self.tables.events
        query = select(t).order_by(t.c.at.desc(), t.c.id.desc()).limit(limit)
        with self.db.connect() as conn:
            return [{"run_id": r.run_id, "drill": r.drill, "event": r.event, "at": r.at,
                     "passed": None if r.passed is None else bool(r.passed)}
                    for r in conn.execute(query).all()]


# --- the routes ---------------------------------------------------------------------------------


def _json_object(what: str) -> dict[str, Any]:
    """The body as a JSON object (NaN and Infinity refused: they are not JSON)."""
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise ApiError(413, "payload_too_large",
                       f"the body is larger than {request.max_content_length // 1024} KiB") from None

    def no_constants(name: str) -> Any:
        raise ValueError(name)

    try:
        raw = json.loads(body or b"", parse_constant=no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raw = None
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid_json", f"the body must be {what} (a JSON object)")
    return raw


def _validated(model: type[BaseModel], raw: dict[str, Any]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _report_not_found(run_id: str) -> ApiError:
    shown = run_id if len(run_id) <= 80 else run_id[:77] + "..."
    return ApiError(404, "drill_report_not_found", f"no drill report {shown!r}; the reports are listed at "
                    f"{DRILLS_API_PATH}")


def register_routes(app: Flask, ctx: ServiceContext, tables: DrillTables) -> DrillStore:
    assert ctx.db is not None
    store = DrillStore(ctx.db, tables)
    app.extensions["drill_store"] = store

    @app.post(DRILLS_API_PATH)
    def post_report():
        principal = g.principal   # the platform checked the operator's control token
        raw = _json_object("a drill report")
        report = _validated(DrillReport, raw)
        replaced = store.put(report, raw)
        log.info("drill report stored", extra={"run_id": report.run_id, "drill": report.name,
                                               "passed": report.passed, "replaced": replaced,
                                               "principal": principal})
        return {"run_id": report.run_id}, 201

    @app.post(DRILL_EVENTS_PATH)
    def post_event():
        principal = g.principal
        event = _validated(DrillEvent, _json_object("a drill event"))
        store.add_event(event)
        ctx.metrics.gauge(c.DRILL_ACTIVE).labels(drill=event.drill).set(1 if event.event == "start" else 0)
        if event.event == "end":
            result = "unscored" if event.passed is None else ("passed" if event.passed else "failed")
            ctx.metrics.count(c.DRILL_RUNS, drill=event.drill, result=result)
        log.info("drill event", extra={"run_id": event.run_id, "drill": event.drill, "event": event.event,
                                       "passed": event.passed, "principal": principal})
        return {"run_id": event.run_id, "event": event.event}, 201

    @app.get(DRILLS_API_PATH)
    def list_reports():
        return store.list(limit=query_int("limit", 100, 1, 1000))

    @app.get(DRILL_REPORT_API_PATH)
    def get_report(run_id: str):
        stored = store.get(run_id)
        if stored is None:
            raise _report_not_found(run_id)
        return Response(stored, content_type="application/json")

    @app.get(DRILLS_PAGE_PATH)
    def reports_page():
        return Response(render_index(store.list(limit=INDEX_ROWS)), content_type=_HTML)

    @app.get(DRILL_REPORT_PAGE_PATH)
    def report_page(run_id: str):
        stored = store.get(run_id)
        if stored is None:
            raise _report_not_found(run_id)
        return Response(render_report(json.loads(stored)), content_type=_HTML)

    return store


# --- on the notifications page --------------------------------------------------------------------


def _utc(epoch: float) -> str:
    try:
        return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "—"


def render_events(events: list[dict[str, Any]]) -> str:
    """The drills that started and ended lately, for the notifications page (an HTML fragment)."""
    e = html.escape
    rows = []
    for ev in events:
        verdict = {True: '<span class="resolved">passed</span>', False: '<span class="firing">failed</span>'}
        outcome = verdict.get(ev["passed"], "") if ev["event"] == "end" else ""
        rows.append(f'<tr class="drill-event"><td>{e(_utc(ev["at"]))}</td><td>{e(ev["drill"])}</td>'
                    f'<td>{"started" if ev["event"] == "start" else "ended"} {outcome}</td>'
                    f'<td><a href="{e(report_path(ev["run_id"]), quote=True)}">{e(ev["run_id"])}</a></td></tr>')
    if not rows:
        return '<p class="muted">No drill events yet.</p>'
    return ("<table><thead><tr><th>when</th><th>drill</th><th>event</th><th>run (report)</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
