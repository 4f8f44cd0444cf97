"""alert-receiver: stores every Alertmanager webhook notification and shows them.

Each Alertmanager receiver posts to ``/webhook/<receiver>`` (the receiver's name is in the URL, so
one process serves ``paging``, ``team-chat``, ``deadman`` ...). A post is validated as webhook
payload version 4 (:mod:`.schema`) before anything is written; a malformed one is refused with a
400 and leaves the stored notifications as they were. Stored notifications (:mod:`.store`) are
listed, newest first, at ``GET /api/v1/notifications`` (JSON), ``GET /`` (a small self-refreshing
HTML page, :mod:`.pages`) and by ``obslab alerts``; drills read them to prove that an alert
reached the receiver it should.

It also serves the runbooks (:mod:`.runbooks`), so that every alert's ``runbook_url`` resolves.

Drills post their reports and start/end events here too (:mod:`.drills`): ``GET /drills`` lists
the reports, and the notifications page shows the latest drill events above the notifications.

This module builds the app: the routes, the checks every request passes, and the security
headers. What it shows is what the on-call acts on, so (security review):

* a webhook post needs a control token (``Authorization: Bearer``; Alertmanager's own, or the
  operator's): a stranger cannot plant a fake page. Refusals count in
  ``alert_receiver_rejected_total`` by reason (``unauthenticated``, ``invalid_token``, ...);
* a body is at most 1 MiB (413, nothing stored); a drill report 2 MiB (that route only);
* links are shown only to the lab's own hosts (:mod:`.links`);
* every response carries ``X-Content-Type-Options: nosniff``, the HTML pages a CSP without
  scripts that forbids framing;
* notifications are kept by count and age (:mod:`.store`).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from pydantic import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from obslab import conventions as c
from obslab.platform.app import ServiceContext, create_service_app, query_int
from obslab.platform.errors import ApiError, validation_error
from obslab.services.alert_receiver import NOTIFICATIONS_PATH, WEBHOOK_VERSION, drills
from obslab.services.alert_receiver.pages import render_page
from obslab.services.alert_receiver.runbooks import HTML_CONTENT_TYPE, _runbook_routes, default_runbooks_dir
from obslab.services.alert_receiver.schema import _ALERTNAME, STATUSES, WebhookPayload
from obslab.services.alert_receiver.store import NotificationStore, drill_tables, metadata

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook/<receiver>"
PAGE_ROWS = 50
# Receiver names become a metric label and a filter value: keep them short and plain.
_RECEIVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

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
    return create_service_app(c.ALERT_RECEIVER, routes, metadata=metadata, db_url=db_url,
                              metric_specs=[c.ALERT_RECEIVER_NOTIFICATIONS, c.ALERT_RECEIVER_REJECTED, c.DRILL_ACTIVE, c.DRILL_RUNS],
                              max_body_bytes=max(MAX_WEBHOOK_BYTES, drills.MAX_REPORT_BYTES))


def _body_limit() -> None:
    """The webhook's 1 MiB for every request but a drill report's post (2 MiB)."""
    rule = request.url_rule
    if rule is None or (request.method, rule.rule) not in drills.LARGE_BODY_ROUTES:
        request.max_content_length = MAX_WEBHOOK_BYTES


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


# Why a post was refused for its credentials (obslab/platform/control.py), as a metric label.
_CREDENTIAL_REASONS = ("unauthenticated", "invalid_token", "forbidden")


def _count_refused_credentials(ctx: ServiceContext, response: Response) -> None:
    """Count (and log) a webhook post refused for its token, whichever layer refused it: the
    service's access control (obslab.topology) before the view, or the view's own check."""
    if request.url_rule is None or request.url_rule.rule != WEBHOOK_PATH or response.status_code not in (401, 403):
        return
    body = response.get_json(silent=True)
    code = body.get("error") if isinstance(body, dict) else None
    reason = code if code in _CREDENTIAL_REASONS else "unauthenticated"
    ctx.metrics.count(c.ALERT_RECEIVER_REJECTED, reason=reason)
    log.warning("webhook rejected", extra={
        "receiver": str((request.view_args or {}).get("receiver", ""))[:80], "reason": reason,
        "client_address": request.remote_addr,
    })


def _parse_webhook(ctx: ServiceContext, receiver: str) -> tuple[WebhookPayload, dict[str, Any]]:
    def reject(reason: str, status: int, code: str, message: str, **details: Any) -> ApiError:
        ctx.metrics.count(c.ALERT_RECEIVER_REJECTED, reason=reason)
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
        ctx.metrics.count(c.ALERT_RECEIVER_NOTIFICATIONS, receiver=receiver, status=payload.status)
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
