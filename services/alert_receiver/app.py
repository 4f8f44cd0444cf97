"""alert-receiver: stores every Alertmanager webhook notification and shows them.

Each Alertmanager receiver posts to ``/webhook/<receiver>`` (the receiver's name is in the URL, so
one process serves ``paging``, ``team-chat``, ``deadman`` ...). A post is validated as webhook
payload version 4 before anything is written; a malformed one is refused with a 400 and leaves the
stored notifications as they were. Stored notifications are listed, newest first, at
``GET /api/v1/notifications`` (JSON), ``GET /`` (a small self-refreshing HTML page) and by
``obslab alerts``; drills read them to prove that an alert reached the receiver it should.

It also serves the runbooks, so that every alert's ``runbook_url``
(``http://localhost:8095/runbooks/<AlertName>.md``) resolves: ``GET /runbooks/`` lists the pages,
``GET /runbooks/<AlertName>.md`` renders one as HTML, and ``?raw=1`` (or ``Accept:
text/markdown``) returns the markdown itself. The pages are read from ``runbooks/`` of the
repository, or from ``$OBSLAB_RUNBOOKS_DIR`` (a container image ships them elsewhere).
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, request
from markdown_it import MarkdownIt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)
from sqlalchemy.dialects.mysql import LONGTEXT

from obslab import conventions as c
from obslab import settings
from obslab.services.alert_receiver import (
    ALERT_RECEIVER,
    ALERT_RECEIVER_NOTIFICATIONS,
    ALERT_RECEIVER_REJECTED,
    NOTIFICATIONS_PATH,
    WEBHOOK_VERSION,
)
from obslab.services.common.app import ServiceContext, create_service_app, query_int
from obslab.services.common.clock import now_ms
from obslab.services.common.db import Database
from obslab.services.common.errors import ApiError, validation_error

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook/<receiver>"
PAGE_REFRESH_SECONDS = 10
PAGE_ROWS = 50
STATUSES = ("firing", "resolved")
# Receiver names become a metric label and a filter value: keep them short and plain.
_RECEIVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ALERTNAME = "alertname"

RUNBOOKS_PATH = "/runbooks/"
RUNBOOKS_DIR_ENV = "OBSLAB_RUNBOOKS_DIR"
# A page is an alert name (UpperCamelCase, or README) plus .md: nothing that can name a path.
_RUNBOOK_PAGE = re.compile(r"[A-Za-z0-9]+\.md")   # used with fullmatch: "$" would let "X.md\n" through
_RUNBOOK_INDEX_PAGE = "README.md"
MARKDOWN_CONTENT_TYPE = "text/markdown; charset=utf-8"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"
# Rendered runbooks load nothing and run nothing; the inline style is the page's own.
_RUNBOOK_CSP = "default-src 'none'; style-src 'unsafe-inline'"


# --- the Alertmanager webhook payload, version 4 ----------------------------------------------

Status = Literal["firing", "resolved"]


class WebhookAlert(BaseModel):
    """One alert in a notification, as Alertmanager's webhook notifier sends it."""

    model_config = ConfigDict(extra="ignore")

    status: Status
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime
    generatorURL: str = ""
    fingerprint: str = ""

    @field_validator("labels")
    @classmethod
    def _named(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get(_ALERTNAME):
            raise ValueError("every alert needs an 'alertname' label")
        return labels


class WebhookPayload(BaseModel):
    """A notification (one alert group), ``version`` "4"."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    groupKey: str = Field(min_length=1)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Status
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[WebhookAlert] = Field(min_length=1)


# --- storage ----------------------------------------------------------------------------------

metadata = MetaData()
# MySQL's TEXT stops at 64 KiB; a group of many alerts with long descriptions can exceed it.
_PAYLOAD = Text().with_variant(LONGTEXT(), "mysql", "mariadb")

notifications_table = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at_ms", BigInteger, nullable=False),
    Column("receiver", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("group_key", Text, nullable=False),
    Column("alertnames", Text, nullable=False),     # comma-separated, for people reading the table
    Column("payload", _PAYLOAD, nullable=False),    # exactly what Alertmanager sent
    Index("ix_notifications_receiver", "receiver"),
)
alerts_table = Table(
    "notification_alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", Integer, ForeignKey("notifications.id"), nullable=False),
    Column("alertname", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(32), nullable=False),
    Column("service", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Index("ix_notification_alerts_notification", "notification_id"),
    Index("ix_notification_alerts_alertname", "alertname"),
)


def _alert_view(alert: dict[str, Any]) -> dict[str, Any]:
    labels = alert.get("labels", {})
    annotations = alert.get("annotations", {})
    ends = alert.get("endsAt")
    # Alertmanager sends Go's zero time (0001-01-01T00:00:00Z) as endsAt of an alert still firing.
    if ends and ends.startswith("0001-"):
        ends = None
    return {
        "alertname": labels.get(_ALERTNAME, ""),
        "status": alert.get("status", ""),
        "severity": labels.get(c.L_SEVERITY, ""),
        "service": labels.get(c.L_SERVICE, ""),
        "summary": annotations.get(c.A_SUMMARY, ""),
        "description": annotations.get(c.A_DESCRIPTION, ""),
        "runbook_url": annotations.get(c.A_RUNBOOK_URL, ""),
        "dashboard_url": annotations.get(c.A_DASHBOARD_URL, ""),
        "starts_at": alert.get("startsAt"),
        "ends_at": ends,
        "labels": labels,
        "annotations": annotations,
    }


def _notification_view(row: Any) -> dict[str, Any]:
    payload = json.loads(row.payload)
    return {
        "id": row.id,
        "received_at": row.received_at_ms / 1000,
        "receiver": row.receiver,
        "status": row.status,
        "group_key": row.group_key,
        "alerts": [_alert_view(a) for a in payload.get("alerts", [])],
    }


class NotificationStore:
    """Notifications and their alerts in the receiver's own database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, receiver: str, payload: WebhookPayload, raw: dict[str, Any]) -> int:
        def unit(conn: Connection) -> int:
            result = conn.execute(insert(notifications_table).values(
                received_at_ms=now_ms(), receiver=receiver, status=payload.status,
                group_key=payload.groupKey,
                alertnames=",".join(sorted({a.labels[_ALERTNAME] for a in payload.alerts})),
                payload=json.dumps(raw, sort_keys=True),
            ))
            notification_id = result.inserted_primary_key[0]
            conn.execute(insert(alerts_table), [{
                "notification_id": notification_id,
                "alertname": a.labels[_ALERTNAME][:200],
                "status": a.status,
                "severity": a.labels.get(c.L_SEVERITY, "")[:32],
                "service": a.labels.get(c.L_SERVICE, "")[:64],
                "fingerprint": a.fingerprint[:64],
            } for a in payload.alerts])
            return notification_id

        return self.db.run(unit)

    def list(self, *, receiver: str | None = None, status: str | None = None,
             alertname: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(notifications_table)
        if receiver:
            query = query.where(notifications_table.c.receiver == receiver)
        if status:
            query = query.where(notifications_table.c.status == status)
        if alertname:
            query = query.where(notifications_table.c.id.in_(
                select(alerts_table.c.notification_id).where(alerts_table.c.alertname == alertname)))
        # Ids grow with arrival; received_at can tie within a millisecond.
        query = query.order_by(notifications_table.c.id.desc()).limit(limit)
        with self.db.connect() as conn:
            rows = conn.execute(query).all()
        return [_notification_view(r) for r in rows]


# --- the app ----------------------------------------------------------------------------------


def create_app(db_url: str | None = None, runbooks_dir: Path | None = None) -> Flask:
    """``runbooks_dir``: where the runbook pages are (default: :func:`default_runbooks_dir`)."""
    directory = runbooks_dir or default_runbooks_dir()

    def routes(app: Flask, ctx: ServiceContext) -> None:
        _routes(app, ctx)
        _runbook_routes(app, directory)

    return create_service_app(ALERT_RECEIVER, routes, metadata=metadata, db_url=db_url,
                              metric_specs=[ALERT_RECEIVER_NOTIFICATIONS, ALERT_RECEIVER_REJECTED])


def default_runbooks_dir() -> Path:
    """``$OBSLAB_RUNBOOKS_DIR``, else ``runbooks/`` of the repository."""
    raw = os.environ.get(RUNBOOKS_DIR_ENV)
    return Path(raw).expanduser() if raw else settings.repo_root() / "runbooks"


def _filters() -> dict[str, Any]:
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(400, "invalid_status", f"status must be 'firing' or 'resolved', got {status!r}")
    return {"receiver": request.args.get("receiver") or None, "status": status,
            "alertname": request.args.get(_ALERTNAME) or None}


def _parse_webhook(ctx: ServiceContext, receiver: str) -> tuple[WebhookPayload, dict[str, Any]]:
    def reject(reason: str, status: int, code: str, message: str, **details: Any) -> ApiError:
        ctx.metrics.count(ALERT_RECEIVER_REJECTED, reason=reason)
        log.warning("webhook rejected", extra={"receiver": receiver, "reason": reason, "problem": message})
        return ApiError(status, code, message, **details)

    if not _RECEIVER_NAME.match(receiver):
        raise reject("invalid_receiver", 404, "invalid_receiver",
                     "the receiver name in /webhook/<receiver> must be 1-64 letters, digits, '.', '_' "
                     "or '-', starting with a letter or digit")
    try:
        raw = json.loads(request.get_data(cache=True) or b"")
    except (ValueError, UnicodeDecodeError):
        raise reject("not_json", 400, "invalid_json",
                     "the body must be an Alertmanager webhook payload (a JSON object)") from None
    if not isinstance(raw, dict):
        raise reject("not_json", 400, "invalid_json",
                     "the body must be an Alertmanager webhook payload (a JSON object)")
    if raw.get("version") != WEBHOOK_VERSION:
        raise reject("unsupported_version", 400, "unsupported_version",
                     f"version must be \"{WEBHOOK_VERSION}\" (Alertmanager webhook payload v4), "
                     f"got {raw.get('version')!r}")
    try:
        return WebhookPayload.model_validate(raw), raw
    except ValidationError as exc:
        error = validation_error(exc)
        raise reject("invalid_payload", error.status, error.code, error.message, **error.details) from None


def _routes(app: Flask, ctx: ServiceContext) -> None:
    assert ctx.db is not None
    store = NotificationStore(ctx.db)

    @app.post(WEBHOOK_PATH)
    def receive(receiver: str):
        payload, raw = _parse_webhook(ctx, receiver)
        notification_id = store.add(receiver, payload, raw)
        ctx.metrics.count(ALERT_RECEIVER_NOTIFICATIONS, receiver=receiver, status=payload.status)
        log.info("notification stored", extra={
            "notification_id": notification_id, "receiver": receiver, "status": payload.status,
            "alerts": len(payload.alerts), "group_key": payload.groupKey,
        })
        return {"id": notification_id, "receiver": receiver, "status": payload.status,
                "alerts": len(payload.alerts)}, 201

    @app.get(NOTIFICATIONS_PATH)
    def list_notifications():
        return store.list(**_filters(), limit=query_int("limit", 100, 1, 1000))

    @app.get("/")
    def page():
        filters = _filters()
        notifications = store.list(**filters, limit=query_int("limit", PAGE_ROWS, 1, 1000))
        return Response(render_page(notifications, filters), content_type=HTML_CONTENT_TYPE)


# --- runbooks ---------------------------------------------------------------------------------

# CommonMark with raw HTML off (markup in a page is shown, never run) plus GFM tables, which
# every runbook opens with. markdown-it refuses javascript:, vbscript:, file: and data: links.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def runbook_pages(directory: Path) -> list[str]:
    """The page names served from ``directory`` (the index README excluded), sorted."""
    if not directory.is_dir():
        return []
    return sorted(path.name for path in directory.iterdir()
                  if _RUNBOOK_PAGE.fullmatch(path.name) and path.name != _RUNBOOK_INDEX_PAGE and path.is_file())


def _runbook_path(directory: Path, page: str) -> Path:
    # The name is checked before it touches the filesystem, so "..", "/", "%2F" and friends
    # never reach a path; anything else that is not a page is the same 404.
    if _RUNBOOK_PAGE.fullmatch(page):
        path = directory / page
        if path.is_file():
            return path
    shown = page if len(page) <= 80 else page[:77] + "..."
    raise ApiError(404, "runbook_not_found",
                   f"no runbook {shown!r}: pages are <AlertName>.md, listed at {RUNBOOKS_PATH}")


def _wants_raw() -> bool:
    raw = request.args.get("raw")
    if raw is not None:
        if raw not in ("0", "1"):
            raise ApiError(400, "invalid_raw", f"raw must be 1 (the markdown) or 0 (HTML), got {raw!r}")
        return raw == "1"
    return request.accept_mimetypes.best_match(["text/html", "text/markdown"]) == "text/markdown"


def _runbook_response(body: str) -> Response:
    response = Response(body, content_type=HTML_CONTENT_TYPE)
    response.headers["Content-Security-Policy"] = _RUNBOOK_CSP
    response.headers["Vary"] = "Accept"
    return response


def _runbook_routes(app: Flask, directory: Path) -> None:
    @app.get(RUNBOOKS_PATH)
    def runbook_index():
        return _runbook_response(render_runbook_index(runbook_pages(directory), directory))

    @app.get(f"{RUNBOOKS_PATH}<path:page>")
    def runbook(page: str):
        path = _runbook_path(directory, page)
        if _wants_raw():
            response = Response(path.read_bytes(), content_type=MARKDOWN_CONTENT_TYPE)
            response.headers["Vary"] = "Accept"
            return response
        return _runbook_response(render_runbook(path.stem, path.read_text(encoding="utf-8")))


# --- the HTML page ----------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.35em .5em;
text-align:left;vertical-align:top}th{background:#f4f4f4}.firing{color:#b00020;font-weight:600}
.resolved{color:#2e7d32;font-weight:600}.critical{color:#b00020}.warning{color:#b26a00}
form{margin:1em 0}input,select{margin-right:.8em}.muted{color:#777}
"""


def _link(url: str, text: str) -> str:
    # Only web links: an annotation must not be able to plant a javascript: URL on the page.
    if not url or urlsplit(url).scheme not in ("http", "https"):
        return ""
    return f'<a href="{html.escape(url, quote=True)}" rel="noopener noreferrer">{html.escape(text)}</a>'


def local_runbook(alertname: str, url: str) -> str | None:
    """This server's path of the alert's runbook when ``url`` is the lab's runbook of that very
    alert (``obslab.conventions.runbook_url``); relative, so it works at any address or port offset."""
    page = f"{alertname}.md"
    if _RUNBOOK_PAGE.fullmatch(page) and url == c.runbook_url(alertname):
        return RUNBOOKS_PATH + page
    return None


def _alertname_cell(alert: dict[str, Any]) -> str:
    name = html.escape(alert["alertname"])
    local = local_runbook(alert["alertname"], alert["runbook_url"])
    return f'<a href="{html.escape(local, quote=True)}">{name}</a>' if local else name


def _when(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds).strftime("%Y-%m-%d %H:%M:%S")


def render_page(notifications: list[dict[str, Any]], filters: dict[str, Any]) -> str:
    e = html.escape
    rows = []
    for n in notifications:
        for a in n["alerts"]:
            links = " ".join(x for x in (_link(a["runbook_url"], "runbook"),
                                         _link(a["dashboard_url"], "dashboard")) if x)
            rows.append(
                f"<tr><td>{e(_when(n['received_at']))}</td><td>{e(n['receiver'])}</td>"
                f"<td class=\"{e(a['status'])}\">{e(a['status'])}</td><td>{_alertname_cell(a)}</td>"
                f"<td class=\"{e(a['severity'])}\">{e(a['severity'])}</td><td>{e(a['service'])}</td>"
                f"<td>{e(a['summary'])}<div class=\"muted\">{e(a['description'])}</div></td>"
                f"<td>{links}</td></tr>")
    status_options = "".join(
        f'<option value="{s}"{" selected" if filters.get("status") == s else ""}>{s or "any"}</option>'
        for s in ("", *STATUSES))
    query = urlencode({k: v for k, v in filters.items() if v})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{PAGE_REFRESH_SECONDS}">
<title>obslab alert-receiver</title><style>{_STYLE}</style></head><body>
<h1>Alert notifications</h1>
<p class="muted">Newest first; this page refreshes every {PAGE_REFRESH_SECONDS} s.
JSON: <a href="{e(NOTIFICATIONS_PATH)}{'?' + e(query) if query else ''}">{e(NOTIFICATIONS_PATH)}</a>;
runbooks: <a href="{RUNBOOKS_PATH}">{RUNBOOKS_PATH}</a></p>
<form method="get" action="/">
<label>receiver <input name="receiver" value="{e(filters.get('receiver') or '')}"></label>
<label>status <select name="status">{status_options}</select></label>
<label>alertname <input name="alertname" value="{e(filters.get('alertname') or '')}"></label>
<button type="submit">filter</button> <a href="/">clear</a>
</form>
<table><thead><tr><th>received</th><th>receiver</th><th>status</th><th>alert</th><th>severity</th>
<th>service</th><th>summary</th><th>links</th></tr></thead><tbody>
{''.join(rows) or '<tr><td colspan="8" class="muted">no notifications yet</td></tr>'}
</tbody></table></body></html>
"""


_RUNBOOK_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:60em;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
code{background:#f4f4f4;padding:0 .2em}pre{background:#f4f4f4;padding:.6em;overflow-x:auto}pre code{padding:0}
nav{margin-bottom:1em}.muted{color:#777}
"""


def _runbook_document(title: str, nav: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{_RUNBOOK_STYLE}</style></head><body>
<nav>{nav}</nav>
{body}</body></html>
"""


def render_runbook(name: str, markdown: str) -> str:
    """One runbook page as HTML (the page's own ``# <AlertName>`` is its heading)."""
    e = html.escape
    nav = (f'<a href="{RUNBOOKS_PATH}">all runbooks</a> &middot; '
           f'<a href="{e(RUNBOOKS_PATH + name)}.md?raw=1">markdown</a> &middot; <a href="/">notifications</a>')
    return _runbook_document(f"{name} - runbook", nav, _MARKDOWN.render(markdown))


def render_runbook_index(pages: list[str], directory: Path) -> str:
    e = html.escape
    items = "".join(f'<li><a href="{e(RUNBOOKS_PATH + page, quote=True)}">{e(page.removesuffix(".md"))}</a></li>'
                    for page in pages)
    index = ""
    if (directory / _RUNBOOK_INDEX_PAGE).is_file():
        index = (f'<p>Severity, team and meaning of every alert: '
                 f'<a href="{RUNBOOKS_PATH}{_RUNBOOK_INDEX_PAGE}">{_RUNBOOK_INDEX_PAGE}</a>.</p>')
    items = items or '<li class="muted">no runbooks found</li>'
    body = ('<h1>Runbooks</h1>\n<p class="muted">One page per alert; every alert\'s runbook_url points here.</p>\n'
            f"{index}\n<ul>{items}</ul>\n")
    return _runbook_document("Runbooks", '<a href="/">notifications</a>', body)
