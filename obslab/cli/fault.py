"""``obslab fault set|list|clear|log``: the fault control plane from a terminal.

Talks to the lab's fault-injector (``--url``, ``$OBSLAB_FAULT_INJECTOR_URL``, or the native
lab's port 8094 + offset). Validation is the injector's: the CLI shows its message as is.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
import time
from typing import Any

from obslab import conventions as c
from obslab import secrets, settings, topology
from obslab.labapi import LabApiClient, LabApiError, text_table

_PARAMETER_OPTIONS = (
    ("rate", "--rate", float, "error_rate: %% of requests (0-100); exception_storm: exceptions per second"),
    ("latency_ms", "--latency-ms", int, "latency, db_slow: added milliseconds"),
    ("jitter_ms", "--jitter-ms", int, "latency: standard deviation of the added milliseconds"),
    ("factor", "--factor", float, "volume_surge: load multiplier (> 1)"),
    ("rps", "--rps", int, "ddos_flood: requests per second at the plateau"),
    ("sources", "--sources", int, "ddos_flood: distinct attacking addresses (default 2000)"),
    ("route", "--route", str, "error_rate, latency: only requests whose path starts with this"),
)


FaultCliError = LabApiError


def parse_ttl(text: str) -> int | None:
    """``90`` / ``90s`` / ``10m`` / ``2h`` / ``1d`` -> seconds; ``never`` -> None (no expiry)."""
    if text.strip().lower() == "never":
        return None
    try:
        seconds = settings.parse_duration(text)
    except settings.ConfigError:
        seconds = 0
    if seconds < 1:
        raise FaultCliError(f"--ttl {text!r}: give a duration like 90s, 10m, 2h, 1d, or 'never'")
    return int(seconds)


HELP = "set, list and clear injected faults (the lab's fault-injector)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="fault-injector base URL (default: $OBSLAB_FAULT_INJECTOR_URL or "
                                      "the native lab's, port 8094 + $OBSLAB_PORT_OFFSET)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="the lab's state directory, where its control token is (default: $OBSLAB_DATA_DIR "
                             "or .obslab/; $OBSLAB_CONTROL_TOKEN wins)")
    actions = parser.add_subparsers(dest="fault_action", required=True, metavar="ACTION")

    kinds = [k.value for k in c.FaultKind]
    set_ = actions.add_parser("set", help="inject a fault (it expires after --ttl, 10m by default)",
                              description="Kinds: " + ", ".join(kinds))
    set_.add_argument("kind", choices=kinds, metavar="KIND", help="one of: " + ", ".join(kinds))
    set_.add_argument("target", metavar="TARGET", help="a service (accounts ...), an IIS site, app or app pool")
    for _name, flag, kind, help_text in _PARAMETER_OPTIONS:
        set_.add_argument(flag, type=kind, help=help_text)
    set_.add_argument("--ttl", default="10m", help="expiry: 90s, 10m, 2h, 1d or 'never' (default: 10m)")
    set_.add_argument("--reason", default="", help="why, for the audit log")
    set_.add_argument("--json", action="store_true", help="print the fault as JSON")

    list_ = actions.add_parser("list", help="active faults (with --all: ended ones too)")
    list_.add_argument("--all", action="store_true", help="include cleared, expired and replaced faults")
    list_.add_argument("--json", action="store_true", help="print JSON")

    clear = actions.add_parser("clear", help="clear faults by id, or all of them")
    clear.add_argument("ids", nargs="*", metavar="ID", help="fault ids (see `obslab fault list`)")
    clear.add_argument("--all", action="store_true", help="clear every active fault")

    log = actions.add_parser("log", help="the audit log: who set, cleared or let expire what, and when")
    log.add_argument("--limit", type=int, default=20, help="entries, newest first (default: 20)")
    log.add_argument("--json", action="store_true", help="print JSON")


def _actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def _expires_in(fault: dict) -> str:
    if fault.get("state", "active") != "active":
        return fault.get("state", "")
    if fault.get("expires_at") is None:
        return "never"
    left = max(0, int(fault["expires_at"] - time.time()))
    return f"{left // 60}m{left % 60:02d}s" if left >= 60 else f"{left}s"


def _params(fault: dict) -> str:
    return " ".join(f"{name}={fault[name]}" for name, *_ in _PARAMETER_OPTIONS if fault.get(name) is not None)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except FaultCliError as exc:
        print(f"obslab: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    directory = secrets.secrets_dir(args.data_dir) if args.data_dir else None
    client = LabApiClient(c.FAULT_INJECTOR, args.url, actor=_actor(),
                          token=secrets.control_token(topology.OPERATOR, directory))
    if args.fault_action == "set":
        ttl = parse_ttl(args.ttl)
        body: dict[str, Any] = {"kind": args.kind, "target": args.target, "reason": args.reason}
        body.update({name: getattr(args, name) for name, *_ in _PARAMETER_OPTIONS if getattr(args, name) is not None})
        if ttl is None:
            body["no_expiry"] = True
        else:
            body["ttl_seconds"] = ttl
        fault = client.call("POST", "/api/v1/faults", json=body)
        if args.json:
            print(json.dumps(fault))
        else:
            print(f"set {fault['id']}: {fault['kind']} on {fault['target']} {_params(fault)} "
                  f"(expires in {_expires_in(fault)}); clear it with `obslab fault clear {fault['id']}`")
        return 0
    if args.fault_action == "list":
        faults = client.call("GET", "/api/v1/faults", params={"state": "all"} if args.all else None)
        if args.json:
            print(json.dumps(faults))
            return 0
        if not faults:
            print("no active faults" if not args.all else "no faults")
            return 0
        print(text_table(["ID", "KIND", "TARGET", "PARAMETERS", "EXPIRES IN", "SET BY"],
                         [[f["id"], f["kind"], f["target"], _params(f), _expires_in(f), f["actor"]] for f in faults]))
        return 0
    if args.fault_action == "clear":
        if args.all == bool(args.ids):
            raise FaultCliError("name the fault ids to clear, or --all (not both)")
        if args.all:
            cleared = client.call("DELETE", "/api/v1/faults")["cleared"]
            print(f"cleared {len(cleared)} fault(s)" + (f": {', '.join(cleared)}" if cleared else ""))
            return 0
        for fault_id in args.ids:
            fault = client.call("DELETE", f"/api/v1/faults/{fault_id}")
            print(f"{fault_id}: {fault['state']}")
        return 0
    if args.fault_action == "log":
        if not 1 <= args.limit <= 1000:
            raise FaultCliError("--limit must be between 1 and 1000")
        entries = client.call("GET", "/api/v1/faults/audit", params={"limit": args.limit})
        if args.json:
            print(json.dumps(entries))
            return 0
        print(text_table(["AT", "ACTION", "FAULT", "KIND", "TARGET", "BY"], [[time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])), e["action"], e["fault_id"],
                       e["kind"], e["target"], e["actor"]] for e in entries]))
        return 0
    raise FaultCliError(f"unknown action {args.fault_action!r}")
