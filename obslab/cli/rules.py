"""``obslab rules generate|list``: the alerting spec's files, and what it defines."""

from __future__ import annotations

import argparse

from obslab.generators import generate
from obslab.labapi import text_table
from obslab.rules import load_catalog

HELP = "alert and recording rules from prometheus/spec/: generate, list"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="rules_action", required=True, metavar="ACTION")
    gen = actions.add_parser("generate", help="write prometheus/rules/, their promtool tests and the runbook "
                                              "index from prometheus/spec/ (and every other generated file)")
    gen.add_argument("--check", action="store_true", help="only report stale generated files (exit 1 if any)")
    actions.add_parser("list", help="every alert the spec defines: severity, team, service, for")


def run(args: argparse.Namespace) -> int:
    if args.rules_action == "list":
        rows = []
        for alert in load_catalog().alerts():
            team = "(owner of service)" if alert.team.startswith("{{") else alert.team
            window = dict(alert.extra_labels).get("long_window")
            rows.append([alert.alert, alert.severity.value, team, alert.service or "(per series)",
                         alert.for_ or (f"burn {window}" if window else "-")])
        print(text_table(["ALERT", "SEVERITY", "TEAM", "SERVICE", "FOR"], rows))
        return 0
    return generate.run(check=args.check, command="obslab rules generate")
