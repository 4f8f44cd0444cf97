"""``obslab alerts``: the notifications Alertmanager delivered to the lab's alert-receiver.

Talks to the alert-receiver (``--url``, ``$OBSLAB_ALERT_RECEIVER_URL``, or the native lab's port
8095 + offset). ``--watch`` keeps polling and prints notifications as they arrive.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import requests

from obslab import settings
from obslab.services.alert_receiver import ALERT_RECEIVER, NOTIFICATIONS_PATH

WATCH_SECONDS = 2.0
_HEADER = ["TIME", "RECEIVER", "STATUS", "ALERTNAME", "SEVERITY", "SERVICE", "SUMMARY"]


class AlertsCliError(Exception):
    """One line that says what to fix."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="alert-receiver base URL (default: $OBSLAB_ALERT_RECEIVER_URL or "
                                      "the native lab's, port 8095 + $OBSLAB_PORT_OFFSET)")
    parser.add_argument("--receiver", help="only notifications sent to this receiver (e.g. paging)")
    parser.add_argument("--status", choices=["firing", "resolved"], help="only firing or only resolved")
    parser.add_argument("--alertname", help="only notifications containing this alert")
    parser.add_argument("--limit", type=int, default=20, help="notifications, newest first (default: 20)")
    parser.add_argument("--json", action="store_true", help="print JSON (with --watch: one line each)")
    parser.add_argument("--watch", action="store_true", help="keep polling and print new notifications")


def default_url() -> str:
    return settings.service_url(ALERT_RECEIVER)


class ReceiverClient:
    def __init__(self, url: str | None = None, timeout: float = 10.0) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False   # loopback only; never through a proxy

    def notifications(self, **params: Any) -> list[dict[str, Any]]:
        query = {k: v for k, v in params.items() if v is not None}
        try:
            response = self.session.get(f"{self.url}{NOTIFICATIONS_PATH}", params=query, timeout=self.timeout)
        except requests.ConnectionError:
            raise AlertsCliError(f"the alert-receiver is not reachable at {self.url}; is the lab running? "
                                 "(`obslab status`; start it with `obslab up --detach`)") from None
        except requests.Timeout:
            raise AlertsCliError(f"the alert-receiver at {self.url} did not answer within {self.timeout:g} s") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else response.text[:200]
            raise AlertsCliError(f"{message} (HTTP {response.status_code})")
        if not isinstance(body, list):
            raise AlertsCliError(f"{self.url} did not answer like an alert-receiver (expected a JSON list)")
        return body


def rows(notifications: list[dict[str, Any]]) -> list[list[str]]:
    """One row per alert of each notification, in the order given."""
    out = []
    for n in notifications:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(n["received_at"]))
        for a in n["alerts"]:
            out.append([when, n["receiver"], a["status"], a["alertname"], a["severity"], a["service"],
                        a["summary"]])
    return out


def table(body: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [_HEADER, *body]) for i in range(len(_HEADER))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in [_HEADER, *body])


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except AlertsCliError as exc:
        print(f"obslab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the way out of --watch
        return 0


def _run(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise AlertsCliError("--limit must be between 1 and 1000")
    client = ReceiverClient(args.url)
    filters = {"receiver": args.receiver, "status": args.status, "alertname": args.alertname}
    notifications = client.notifications(**filters, limit=args.limit)
    if not args.watch:
        if args.json:
            print(json.dumps(notifications))
        elif notifications:
            print(table(rows(notifications)))
        else:
            print("no notifications" + (" match the filters" if any(filters.values()) else " yet"))
        return 0
    # Watching: oldest first, so the terminal reads like a log.
    shown = notifications[::-1]
    if args.json:
        for n in shown:
            print(json.dumps(n), flush=True)
    else:
        print(table(rows(shown)), flush=True)
    last = max((n["id"] for n in notifications), default=0)
    while True:
        time.sleep(WATCH_SECONDS)
        new = [n for n in client.notifications(**filters, limit=1000) if n["id"] > last]
        for n in reversed(new):
            print(json.dumps(n) if args.json else table(rows([n])).split("\n", 1)[1], flush=True)
        last = max([last, *(n["id"] for n in new)])
