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

from obslab import conventions as c
from obslab.labapi import LabApiClient, LabApiError, text_table
from obslab.services.alert_receiver import NOTIFICATIONS_PATH

WATCH_SECONDS = 2.0
_HEADER = ["TIME", "RECEIVER", "STATUS", "ALERTNAME", "SEVERITY", "SERVICE", "SUMMARY"]


AlertsCliError = LabApiError


HELP = "notifications Alertmanager delivered to the lab's alert-receiver"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="alert-receiver base URL (default: $OBSLAB_ALERT_RECEIVER_URL or "
                                      "the native lab's, port 8095 + $OBSLAB_PORT_OFFSET)")
    parser.add_argument("--receiver", help="only notifications sent to this receiver (e.g. paging)")
    parser.add_argument("--status", choices=["firing", "resolved"], help="only firing or only resolved")
    parser.add_argument("--alertname", help="only notifications containing this alert")
    parser.add_argument("--limit", type=int, default=20, help="notifications, newest first (default: 20)")
    parser.add_argument("--json", action="store_true", help="print JSON (with --watch: one line each)")
    parser.add_argument("--watch", action="store_true", help="keep polling and print new notifications")


def fetch(client: LabApiClient, **params: Any) -> list[dict[str, Any]]:
    body = client.call("GET", NOTIFICATIONS_PATH, params={k: v for k, v in params.items() if v is not None})
    if not isinstance(body, list):
        raise AlertsCliError(f"{client.url} did not answer like an alert-receiver (expected a JSON list)")
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
    return text_table(_HEADER, body)


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
    client = LabApiClient(c.ALERT_RECEIVER, args.url)
    filters = {"receiver": args.receiver, "status": args.status, "alertname": args.alertname}
    notifications = fetch(client, **filters, limit=args.limit)
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
        new = [n for n in fetch(client, **filters, limit=1000) if n["id"] > last]
        for n in reversed(new):
            print(json.dumps(n) if args.json else table(rows([n])).split("\n", 1)[1], flush=True)
        last = max([last, *(n["id"] for n in new)])
