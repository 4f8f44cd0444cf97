"""``obslab status``: the health of every component of a running lab."""

from __future__ import annotations

import argparse
import json
import sys

from obslab.cli.lab import data_dir_option, native_lab

HELP = "health of every component of a running lab"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data_dir_option(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    lab = native_lab(args)
    if not lab.running():
        if args.json:
            print(json.dumps({"components": [], "running": False}))
        else:
            print(f"No lab is running from {lab.data_dir}; start one with `obslab up --detach`.", file=sys.stderr)
        return 1
    statuses = lab.statuses()
    if args.json:
        print(json.dumps({"components": [
            {"name": s.name, "url": s.url, "healthy": s.healthy} for s in statuses
        ]}))
    else:
        lab.print_table(statuses)
    return 0 if all(s.healthy for s in statuses) else 1
