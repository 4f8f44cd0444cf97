"""``obslab generate [--check]``: write the committed generated files, or list the stale ones."""

from __future__ import annotations

import argparse

HELP = "regenerate the committed generated files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="only report stale generated files (exit 1 if any)")


def run(args: argparse.Namespace) -> int:
    from obslab.generators import generate

    return generate.run(check=args.check)
