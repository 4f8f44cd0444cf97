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

Drills post their reports and start/end events here too (:mod:`.drills`): ``GET /drills`` lists
the reports, and the notifications page shows the latest drill events above the notifications.

What it shows is what the on-call acts on, so (security review):

* a webhook post needs a control token (``Authorization: Bearer``; Alertmanager's own, or the
  operator's): a stranger cannot plant a fake page. Refusals count in
  ``alert_receiver_rejected_total`` by reason (``unauthenticated``, ``invalid_token``, ...);
* a body is at most 1 MiB (413, nothing stored); a drill report 2 MiB (that route only);
* ``runbook_url`` and ``dashboard_url`` are shown only when they point at the lab's own hosts
  (:class:`LinkPolicy`, ``$OBSLAB_LINK_HOSTS`` adds more); a foreign link is shown empty and
  named in the alert's ``links_removed``. The payload is stored as received (the evidence of
  what was attempted) and filtered on every read, so no view ever shows a foreign link;
* every response carries ``X-Content-Type-Options: nosniff``, the HTML pages a CSP without
  scripts that forbids framing;
* notifications are kept by count (``$OBSLAB_RECEIVER_MAX_NOTIFICATIONS``, 10000) and age
  (``$OBSLAB_RECEIVER_RETENTION_HOURS``, 168), pruned oldest first with the insert that
  overflows them.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, g, request
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
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.mysql import LONGTEXT
from werkzeug.exceptions import RequestEntityTooLarge

from obslab import conventions as c
from obslab import settings
from obslab.services.alert_receiver import drills
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
from obslab.settings import ConfigError

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
# The HTML pages (notifications, runbooks) load nothing and run nothing (the inline style is
# the page's own), submit their filter form only here, and are never framed (clickjacking).
HTML_CSP = ("default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; img-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# Anything else (JSON, markdown, metrics) is data: nothing in it may load or be framed either.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # A link followed from a page must not tell the other site what the on-call was looking at.
    "Referrer-Policy": "no-referrer",
}

# What Alertmanager sends: a notification lists at most max_alerts (50) alerts of a few KiB
# each; 1 MiB is ample, and bounds what one post can make this process parse and store.
MAX_WEBHOOK_BYTES = 1024 * 1024

# Retention (see NotificationStore).
MAX_NOTIFICATIONS_ENV = "OBSLAB_RECEIVER_MAX_NOTIFICATIONS"
RETENTION_HOURS_ENV = "OBSLAB_RECEIVER_RETENTION_HOURS"
DEFAULT_MAX_NOTIFICATIONS = 10_000
DEFAULT_RETENTION_HOURS = 168.0

# The annotations shown as links, and the hosts they may point at besides the lab's own.
LINK_ANNOTATIONS = (c.A_RUNBOOK_URL, c.A_DASHBOARD_URL)
LINK_HOSTS_ENV = "OBSLAB_LINK_HOSTS"


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
drill_tables = drills.define_tables(metadata)


# --- links: only to the lab's own hosts --------------------------------------------------------

# A URL a browser reads the way urllib does: printable ASCII, no space and no backslash (WHATWG
# browsers take "\" for "/": "http://evil.example\@localhost:8095/" goes to evil.example).
_URL_CHARS = re.compile(r"[\x21-\x5b\x5d-\x7e]+")
# host[:port] without user info: a DNS name or an IPv4 address.
_NETLOC = re.compile(r"(?P<host>[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)(?::(?P<port>[0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _netloc(text: str, what: str) -> tuple[str, int | None]:
    match = _NETLOC.fullmatch(text.strip().lower())
    port = int(match.group("port")) if match and match.group("port") else None
    if match is None or (port is not None and not 0 < port < 65536):
        raise ConfigError(f"{what}: {text.strip()!r} is not host[:port] (a name or IPv4 address, "
                          "optionally a port; no scheme, path or user)")
    return match.group("host"), port


@dataclass(frozen=True)
class LinkPolicy:
    """Where a notification's ``runbook_url`` and ``dashboard_url`` may point.

    A forged or misconfigured alert must not put a link to another site in front of the on-call
    (phishing: "the runbook says: log in here"). Links are kept only when they are http(s) to a
    host of the lab: the runbooks' and dashboards' hosts of the conventions (localhost:8095,
    localhost:3000), this server at 127.0.0.1 or localhost on its port with the lab's offset (a
    lab beside the default one links its runbooks there), and ``$OBSLAB_LINK_HOSTS``
    (comma-separated host[:port]; a host without a port stands for the scheme's default port).
    """

    hosts: frozenset[tuple[str, int | None]]
    # Where this server is reached: a runbook URL on one of these is served here.
    own: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls) -> LinkPolicy:
        port = settings.port(c.ALERT_RECEIVER)
        own = {("127.0.0.1", port), ("localhost", port)}
        runbooks = _netloc(urlsplit(c.RUNBOOK_BASE_URL).netloc, "RUNBOOK_BASE_URL")
        dashboards = _netloc(urlsplit(c.DASHBOARD_BASE_URL).netloc, "DASHBOARD_BASE_URL")
        hosts: set[tuple[str, int | None]] = {*own, runbooks, dashboards}
        for entry in os.environ.get(LINK_HOSTS_ENV, "").split(","):
            if entry.strip():
                hosts.add(_netloc(entry, LINK_HOSTS_ENV))
        # The conventions' runbook URL is an alert-receiver's page: shown as this server's copy.
        own_runbooks = {*own, (runbooks[0], runbooks[1] or _DEFAULT_PORTS["http"])}
        return cls(frozenset(hosts), frozenset(own_runbooks))

    @staticmethod
    def _where(url: str) -> tuple[str, int, bool] | None:
        """(host, port, whether the port is the scheme's default) of an http(s) URL that every
        reader resolves alike; None otherwise (never an exception: stored data is shown with it)."""
        if not _URL_CHARS.fullmatch(url):
            return None
        try:
            parts = urlsplit(url)
        except ValueError:   # e.g. "http://[evil/": an unclosed IPv6 bracket
            return None
        if parts.scheme not in _DEFAULT_PORTS:
            return None
        match = _NETLOC.fullmatch(parts.netloc.lower())
        if match is None:
            return None
        default = _DEFAULT_PORTS[parts.scheme]
        port = int(match.group("port")) if match.group("port") else default
        return match.group("host"), port, port == default

    def allows(self, url: str) -> bool:
        where = self._where(url)
        if where is None:
            return False
        host, port, default = where
        return (host, port) in self.hosts or (default and (host, None) in self.hosts)

    def local_runbook(self, alertname: str, url: str) -> str | None:
        """This server's path of the alert's runbook when ``url`` is the lab's runbook of that very
        alert here (``obslab.conventions.runbook_url``, or the same page at this server's own
        address); relative, so it works at any address or port offset."""
        page = f"{alertname}.md"
        where = self._where(url)
        if not _RUNBOOK_PAGE.fullmatch(page) or where is None or where[:2] not in self.own:
            return None
        parts = urlsplit(url)
        return RUNBOOKS_PATH + page if parts.path == RUNBOOKS_PATH + page and not parts.query \
            and not parts.fragment else None

    def removed(self, annotations: dict[str, Any]) -> list[str]:
        """The link annotations of ``annotations`` that point elsewhere."""
        return [name for name in LINK_ANNOTATIONS
                if annotations.get(name) and not self.allows(str(annotations[name]))]


# --- the views --------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def _alert_view(alert: dict[str, Any], links: LinkPolicy) -> dict[str, Any]:
    labels = alert.get("labels", {})
    annotations = dict(alert.get("annotations", {}))
    removed = links.removed(annotations)
    for name in removed:
        annotations[name] = ""
    # The payload is stored as sent: a time validated from a number is still a number here.
    starts, ends = (_text(alert.get(field)) for field in ("startsAt", "endsAt"))
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
        # Links this receiver would not show (not to a lab host): shown empty, named here.
        "links_removed": removed,
        "starts_at": starts,
        "ends_at": ends,
        "labels": labels,
        "annotations": annotations,
    }


def _notification_view(row: Any, links: LinkPolicy) -> dict[str, Any]:
    payload = json.loads(row.payload)
    alerts = [_alert_view(a, links) for a in payload.get("alerts", [])]
    return {
        "id": row.id,
        "received_at": row.received_at_ms / 1000,
        "receiver": row.receiver,
        "status": row.status,
        "group_key": row.group_key,
        "alerts": alerts,
        # Which link annotations were removed from any of its alerts (details per alert).
        "links_removed": sorted({name for a in alerts for name in a["links_removed"]}),
    }


# --- storage: kept by count and age -------------------------------------------------------------

# The age check reads the oldest rows by primary key, this many at most per check.
_AGE_BATCH = 1000
# An expired notification outlives the retention by at most this share of it (or a minute).
_AGE_CHECK_SHARE = 0.01
_AGE_CHECK_MAX_S = 60.0


@dataclass
class _PruneState:
    """What one process knows between inserts (never trusted beyond a hint: ids are global)."""

    floor: int | None = None          # the lowest id that may still exist; None: unknown yet
    next_age_check_ms: int = 0


class NotificationStore:
    """Notifications and their alerts in the receiver's own database, kept by count and age.

    Pruning runs in the insert's transaction and costs nothing on most inserts: ids only grow, so
    ``new id - lowest id that may exist + 1`` bounds the count from above without a COUNT(*)
    (also across processes: another one's inserts raise the id, its prunes only lower the real
    count). When the bound passes the maximum, the oldest are deleted down to the maximum less a
    1% batch (one index walk per ~1% of inserts). Age is checked on the oldest rows by primary key
    (ids follow arrival), at most every 1% of the retention (a minute at most). A notification's
    alert rows go with it.
    """

    def __init__(self, db: Database, links: LinkPolicy | None = None, *, max_notifications: int | None = None,
                 retention_seconds: float | None = None) -> None:
        self.db = db
        self.links = links or LinkPolicy.from_settings()
        self.max_notifications = max_notifications or settings.int_setting(
            MAX_NOTIFICATIONS_ENV, DEFAULT_MAX_NOTIFICATIONS, minimum=1)
        self.retention_ms = int(1000 * (retention_seconds or 3600 * settings.float_setting(
            RETENTION_HOURS_ENV, DEFAULT_RETENTION_HOURS, minimum=0.001)))
        self._batch = max(1, self.max_notifications // 100)
        self._age_check_ms = int(min(_AGE_CHECK_MAX_S * 1000, self.retention_ms * _AGE_CHECK_SHARE))
        self._state = _PruneState()

    def add(self, receiver: str, payload: WebhookPayload, raw: dict[str, Any]) -> int:
        received = now_ms()
        state = self._state

        def unit(conn: Connection) -> tuple[int, int | None, bool]:
            result = conn.execute(insert(notifications_table).values(
                received_at_ms=received, receiver=receiver, status=payload.status,
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
            floor, checked_age = self._prune(conn, notification_id, received, state)
            return notification_id, floor, checked_age

        notification_id, floor, checked_age = self.db.run(unit)
        # Only after the commit: a transaction run again must not start from a state it never kept.
        state.floor = floor
        if checked_age:
            state.next_age_check_ms = received + self._age_check_ms
        return notification_id

    def _prune(self, conn: Connection, newest: int, now: int, state: _PruneState) -> tuple[int | None, bool]:
        """Delete what is over the count or the age; returns (new floor, whether age was checked)."""
        ids = notifications_table.c.id
        floor = state.floor
        if floor is None:
            floor = conn.execute(select(func.min(ids))).scalar() or newest
        cutoff = 0
        if newest - floor + 1 > self.max_notifications:
            keep = max(1, self.max_notifications - self._batch)
            cutoff = conn.execute(select(ids).order_by(ids.desc()).offset(keep).limit(1)).scalar() or 0
        checked_age = now >= state.next_age_check_ms
        if checked_age:
            oldest = conn.execute(select(ids, notifications_table.c.received_at_ms).where(ids > cutoff)
                                  .order_by(ids).limit(_AGE_BATCH)).all()
            for row in oldest:
                if row.received_at_ms >= now - self.retention_ms:
                    break
                cutoff = row.id
        if cutoff:
            conn.execute(delete(alerts_table).where(alerts_table.c.notification_id <= cutoff))
            deleted = conn.execute(delete(notifications_table).where(ids <= cutoff)).rowcount
            if deleted:
                log.info("notifications pruned", extra={"deleted": deleted, "up_to_id": cutoff})
            floor = max(floor, cutoff + 1)
        return floor, checked_age

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
        return [_notification_view(r, self.links) for r in rows]


# --- the app ----------------------------------------------------------------------------------


def create_app(db_url: str | None = None, runbooks_dir: Path | None = None) -> Flask:
    """``runbooks_dir``: where the runbook pages are (default: :func:`default_runbooks_dir`)."""
    directory = runbooks_dir or default_runbooks_dir()

    def routes(app: Flask, ctx: ServiceContext) -> None:
        app.after_request(_security_headers)
        app.before_request(_body_limit)
        _routes(app, ctx)
        _runbook_routes(app, directory)
        drills.register_routes(app, ctx, drill_tables)

    # The app's limit is the largest any route takes (so that waitress, which buffers up to twice
    # it, leaves every 413 to the app); each request is held to its own route's (_body_limit).
    return create_service_app(ALERT_RECEIVER, routes, metadata=metadata, db_url=db_url,
                              metric_specs=[ALERT_RECEIVER_NOTIFICATIONS, ALERT_RECEIVER_REJECTED, c.DRILL_ACTIVE, c.DRILL_RUNS],
                              max_body_bytes=max(MAX_WEBHOOK_BYTES, drills.MAX_REPORT_BYTES))


def _body_limit() -> None:
    """The webhook's 1 MiB for every request but a drill report's post (2 MiB)."""
    rule = request.url_rule
    if rule is None or (request.method, rule.rule) not in drills.LARGE_BODY_ROUTES:
        request.max_content_length = MAX_WEBHOOK_BYTES


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


def _security_headers(response: Response) -> Response:
    """Every response: no sniffing, no framing, no referrer; a CSP without scripts on the pages."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    html_page = (response.mimetype or "") == "text/html"
    response.headers.setdefault("Content-Security-Policy", HTML_CSP if html_page else DATA_CSP)
    return response


# Why a post was refused for its credentials (services/common/control.py), as a metric label.
_CREDENTIAL_REASONS = ("unauthenticated", "invalid_token", "forbidden")


def _count_refused_credentials(ctx: ServiceContext, response: Response) -> None:
    """Count (and log) a webhook post refused for its token, whichever layer refused it: the
    service's access control (obslab.topology) before the view, or the view's own check."""
    if request.url_rule is None or request.url_rule.rule != WEBHOOK_PATH or response.status_code not in (401, 403):
        return
    body = response.get_json(silent=True)
    code = body.get("error") if isinstance(body, dict) else None
    reason = code if code in _CREDENTIAL_REASONS else "unauthenticated"
    ctx.metrics.count(ALERT_RECEIVER_REJECTED, reason=reason)
    log.warning("webhook rejected", extra={
        "receiver": str((request.view_args or {}).get("receiver", ""))[:80], "reason": reason,
        "client_address": request.remote_addr,
    })


def _parse_webhook(ctx: ServiceContext, receiver: str) -> tuple[WebhookPayload, dict[str, Any]]:
    def reject(reason: str, status: int, code: str, message: str, **details: Any) -> ApiError:
        ctx.metrics.count(ALERT_RECEIVER_REJECTED, reason=reason)
        log.warning("webhook rejected", extra={
            "receiver": receiver[:80], "reason": reason, "problem": message,
            "client_address": request.remote_addr,
        })
        return ApiError(status, code, message, **details)

    if not _RECEIVER_NAME.match(receiver):
        raise reject("invalid_receiver", 404, "invalid_receiver",
                     "the receiver name in /webhook/<receiver> must be 1-64 letters, digits, '.', '_' "
                     "or '-', starting with a letter or digit")
    def too_large() -> ApiError:
        return reject("too_large", 413, "payload_too_large",
                      f"the body is larger than {MAX_WEBHOOK_BYTES // 1024} KiB; Alertmanager's max_alerts "
                      "keeps a notification far below that")

    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:   # chunked bodies too: waitress sets their length once read
        raise too_large() from None
    try:
        raw = json.loads(body or b"")
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
    app.extensions["notification_store"] = store

    @app.after_request
    def _refused_credentials(response: Response) -> Response:
        _count_refused_credentials(ctx, response)
        return response

    @app.post(WEBHOOK_PATH)
    def receive(receiver: str):
        # Before the body is even read: a stranger's post costs nothing and changes nothing.
        # (The service's access control checks the same before the view; this holds without it.)
        principal = g.principal   # the platform checked the control token (obslab/topology.py)
        payload, raw = _parse_webhook(ctx, receiver)
        notification_id = store.add(receiver, payload, raw)
        ctx.metrics.count(ALERT_RECEIVER_NOTIFICATIONS, receiver=receiver, status=payload.status)
        log.info("notification stored", extra={
            "notification_id": notification_id, "receiver": receiver, "status": payload.status,
            "alerts": len(payload.alerts), "group_key": payload.groupKey, "principal": principal,
        })
        # Stored as received (the evidence), never shown: every view filters the links again.
        for alert in payload.alerts:
            for name in store.links.removed(alert.annotations):
                log.warning("notification link not shown: not a lab host", extra={
                    "notification_id": notification_id, "receiver": receiver, "principal": principal,
                    "alertname": alert.labels[_ALERTNAME][:200], "annotation": name,
                    "link": alert.annotations[name][:200],
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
        drill_events = app.extensions["drill_store"].events(drills.FRONT_PAGE_EVENTS)
        return Response(render_page(notifications, filters, store.links, drill_events),
                        content_type=HTML_CONTENT_TYPE)


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


def _link(url: str, text: str, links: LinkPolicy) -> str:
    # Only web links to the lab's hosts (the views already emptied any other; checked again
    # here so that no caller can put a javascript: URL or another site on the page).
    if not url or not links.allows(url):
        return ""
    return f'<a href="{html.escape(url, quote=True)}" rel="noopener noreferrer">{html.escape(text)}</a>'


def _links_cell(alert: dict[str, Any], links: LinkPolicy) -> str:
    shown = [_link(alert["runbook_url"], "runbook", links), _link(alert["dashboard_url"], "dashboard", links)]
    if alert.get("links_removed"):
        names = ", ".join(alert["links_removed"])
        shown.append(f'<span class="muted" title="{html.escape(names, quote=True)} pointed outside the '
                     f'lab and is not shown">link removed</span>')
    return " ".join(x for x in shown if x)


def _alertname_cell(alert: dict[str, Any], links: LinkPolicy) -> str:
    name = html.escape(alert["alertname"])
    local = links.local_runbook(alert["alertname"], alert["runbook_url"])
    return f'<a href="{html.escape(local, quote=True)}">{name}</a>' if local else name


def _when(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds).strftime("%Y-%m-%d %H:%M:%S")


def render_page(notifications: list[dict[str, Any]], filters: dict[str, Any], links: LinkPolicy,
                drill_events: list[dict[str, Any]] | None = None) -> str:
    e = html.escape
    rows = []
    for n in notifications:
        for a in n["alerts"]:
            rows.append(
                f"<tr><td>{e(_when(n['received_at']))}</td><td>{e(n['receiver'])}</td>"
                f"<td class=\"{e(a['status'])}\">{e(a['status'])}</td><td>{_alertname_cell(a, links)}</td>"
                f"<td class=\"{e(a['severity'])}\">{e(a['severity'])}</td><td>{e(a['service'])}</td>"
                f"<td>{e(a['summary'])}<div class=\"muted\">{e(a['description'])}</div></td>"
                f"<td>{_links_cell(a, links)}</td></tr>")
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
runbooks: <a href="{RUNBOOKS_PATH}">{RUNBOOKS_PATH}</a>;
<a href="{drills.DRILLS_PAGE_PATH}">Drill reports</a></p>
<h2>Drills</h2>
{drills.render_events(drill_events or [])}
<h2>Notifications</h2>
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
