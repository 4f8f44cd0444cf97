"""``obslab status``: the health of every component of a running lab.

``--verbose`` adds the checks of :mod:`obslab.lab.health` (readiness details, scrape targets, rule
evaluation, notification failures, Alertmanager's cluster, disk) and a last line that names every
problem; its exit status covers them all. ``--watch [SECONDS]`` repeats the round until Ctrl-C
(redrawn in place on a terminal, with a timestamped header otherwise; one JSON document per line
with ``--json``) and then exits with the status of the last round it finished.

Exit status: 0 healthy, 1 something unhealthy (or no lab running), 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from typing import TextIO

from obslab.cli.lab import data_dir_option, native_lab
from obslab.errors import CliError

HELP = "health of every component of a running lab"
WATCH_SECONDS = 5.0
_CLEAR = "\033[H\033[2J"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from obslab.lab import health

    data_dir_option(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="also readiness details, scrape targets, rule evaluation, notification failures "
                             "(last 10m), Alertmanager's cluster and the data directory's disk; the exit "
                             "status covers them all")
    parser.add_argument("--watch", nargs="?", type=float, const=WATCH_SECONDS, metavar="SECONDS",
                        help=f"repeat every SECONDS (default {WATCH_SECONDS:g}) until Ctrl-C; the exit status "
                             "is the last round's")
    parser.add_argument("--min-free", type=float, default=health.DEFAULT_MIN_FREE_PERCENT, metavar="PERCENT",
                        help="with --verbose: unhealthy when less than PERCENT of the data directory's "
                             f"filesystem is free (default {health.DEFAULT_MIN_FREE_PERCENT:g})")
    # For tests: stop --watch after N rounds.
    parser.add_argument("--rounds", type=int, help=argparse.SUPPRESS)


class _Buffer(io.StringIO):
    """A round's output, written at once (no flicker); colours only when the real output has them."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def run(args: argparse.Namespace) -> int:
    if args.watch is not None and not args.watch > 0:
        raise CliError(f"--watch takes a positive number of seconds, got {args.watch:g}")
    if args.rounds is not None and args.rounds < 1:
        raise CliError("--rounds must be at least 1")
    if not 0 <= args.min_free < 100:
        raise CliError(f"--min-free is a percentage between 0 and 100, got {args.min_free:g}")
    out = sys.stdout
    if args.watch is None:
        code, text, error = one_round(args, tty=out.isatty())
        out.write(text)
        sys.stderr.write(error)
        return code
    return watch(lambda: one_round(args, tty=out.isatty(), watching=True), args.watch,
                 rounds=args.rounds, out=out, json_lines=args.json)


def one_round(args: argparse.Namespace, *, tty: bool, watching: bool = False) -> tuple[int, str, str]:
    """(exit status, stdout text, stderr text) of one look at the lab."""
    buffer = _Buffer(tty)
    lab = native_lab(args, out=buffer)
    if not lab.running():
        if args.json:
            return 1, json.dumps({"components": [], "running": False}) + "\n", ""
        message = f"No lab is running from {lab.data_dir}; start one with `obslab up --detach`.\n"
        # Watching, the message is the round's output (the screen is redrawn over it).
        return (1, message, "") if watching else (1, "", message)
    if args.verbose:
        from obslab.lab import health

        report = health.collect(lab, min_free_percent=args.min_free)
        if args.json:
            return (0 if report.healthy else 1), json.dumps(report.as_json()) + "\n", ""
        lab.print_table([_status(item) for item in report.components])
        for line in health.render(report):
            lab.say(line)
        return (0 if report.healthy else 1), buffer.getvalue(), ""
    statuses = lab.statuses()
    if args.json:
        buffer.write(json.dumps({"components": [
            {"name": s.name, "url": s.url, "healthy": s.healthy} for s in statuses
        ]}) + "\n")
    else:
        lab.print_table(statuses)
    return (0 if all(s.healthy for s in statuses) else 1), buffer.getvalue(), ""


def _status(item: dict):
    from obslab.lab.native import ComponentStatus

    return ComponentStatus(item["name"], item["url"], item["healthy"], item["detail"])


def watch(round_: Callable[[], tuple[int, str, str]], interval: float, *, rounds: int | None = None,
          out: TextIO = sys.stdout, json_lines: bool = False,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Run ``round_`` every ``interval`` seconds (``rounds`` times, or until Ctrl-C) and show each
    result: the screen cleared first on a terminal, a timestamped header otherwise, each JSON
    document on its own line. Returns the exit status of the last finished round (130 if none)."""
    last: int | None = None
    done = 0
    tty = out.isatty() and not json_lines
    try:
        while True:
            started = time.monotonic()
            code, text, error = round_()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            if json_lines:
                out.write(text)
            else:
                header = (f"obslab status  {stamp}  every {interval:g} s; Ctrl-C to stop  "
                          f"[{'healthy' if code == 0 else 'UNHEALTHY'}]")
                if tty:
                    out.write(_CLEAR + header + "\n" + text + error)
                else:
                    out.write(f"\n=== {header} ===\n{text}{error}")
            out.flush()
            last = code
            done += 1
            if rounds is not None and done >= rounds:
                return last
            sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        if tty:
            out.write("\n")
        return 130 if last is None else last
