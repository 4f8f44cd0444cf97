"""alert-receiver: the HTML notifications page (``GET /``).

A small self-refreshing page listing the stored notifications, newest first, with a filter form
and the latest drill events above them (:mod:`.drills`). Everything shown is escaped, and a link
is rendered only when :class:`.links.LinkPolicy` allows it, whatever the caller passes in.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from obslab.services.alert_receiver import NOTIFICATIONS_PATH, drills
from obslab.services.alert_receiver.links import RUNBOOKS_PATH, LinkPolicy
from obslab.services.alert_receiver.schema import STATUSES

PAGE_REFRESH_SECONDS = 10


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
