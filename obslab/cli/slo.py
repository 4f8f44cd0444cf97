"""``obslab slo report [--days N] [--json] [--html FILE]``: per SLO of the spec, the objective, the
achieved ratio, the error budget spent and left, the worst burn hours and the incidents (alerts)
that spent it, from the lab's Prometheus (definitions and the JSON shape: :mod:`obslab.slo.report`).

Reads the native lab's Prometheus (port 9090 + offset) unless ``--prometheus URL`` names another
(a compose lab: http://localhost:9090). Works on ``obslab history`` too: the report falls back to
the raw SLI where no rule was evaluated, and lists the history's incidents.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from obslab import conventions as c
from obslab import profiles, settings
from obslab.errors import CliError

HELP = "service level objectives: the error-budget report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from obslab.slo.report import DEFAULT_DAYS

    actions = parser.add_subparsers(dest="slo_action", required=True, metavar="ACTION")
    report = actions.add_parser(
        "report", help="objective, achieved ratio, budget spent and left, worst hours, incidents per SLO",
        description="Per SLO: the objective, the achieved ratio, the error budget spent and left, the worst "
                    "burn hours and the incidents (alerts) that spent it, from the lab's Prometheus.")
    report.add_argument("--days", type=int, metavar="N",
                        help=f"the window: N days ending at --end (default: {DEFAULT_DAYS}, or what Prometheus "
                             "holds when less); refused beyond the data Prometheus holds")
    report.add_argument("--end", metavar="ISO8601|now", help="end of the window (default: now)")
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with a "
                                                       "burn-down picture per SLO")
    report.add_argument("--prometheus", metavar="URL",
                        help="Prometheus to read (default: the native lab's, port 9090 + $OBSLAB_PORT_OFFSET)")
    report.add_argument("--data-dir", metavar="DIR",
                        help="lab state directory: its profile and history (default: $OBSLAB_DATA_DIR or .obslab/)")
    report.add_argument("--profile", choices=sorted(profiles.PROFILES),
                        help="the lab's time profile (default: the one the lab recorded, else production)")


def run(args: argparse.Namespace) -> int:
    from obslab.iis_mock.clock import parse_time
    from obslab.lab.native import NativeLab
    from obslab.slo import report

    data_dir = settings.data_dir(args.data_dir)
    # The data directory describes the lab at --prometheus only when the user says so.
    local = args.prometheus is None or args.data_dir is not None
    recorded = NativeLab(data_dir).recorded_profile() if local else None
    profile = profiles.profile(args.profile or recorded or profiles.PRODUCTION.name)
    end = None
    if args.end is not None and args.end.strip().lower() != "now":
        try:
            end = parse_time(args.end)
        except settings.ConfigError as exc:
            raise CliError(f"--end: {exc}") from None
    if args.days is not None and args.days < 1:
        raise CliError(f"--days must be at least 1, got {args.days}")
    history = data_dir / "history" / "incidents.json"
    prometheus = report.Prometheus(args.prometheus or settings.service_url(c.PROMETHEUS))
    result = report.build(prometheus, profile=profile, end=end, days=args.days,
                          history_file=history if local and history.exists() else None, now=time.time())
    if args.html:
        path = Path(args.html)
        try:
            path.write_text(report.render_html(result))
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror}") from None
    if args.json:
        print(json.dumps(result.data))
    else:
        print(report.render_text(result))
    if args.html:
        print(f"HTML report: {args.html}", file=sys.stderr if args.json else sys.stdout)
    return 0
