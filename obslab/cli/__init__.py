"""The ``obslab`` command: one module per subcommand in this package, each with ``HELP``,
``add_arguments(parser)`` and ``run(args)``; this module only builds the parser from them.

Every failure a user can fix ends the command with a non-zero exit status and one line on
stderr that says what to do.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from obslab import __version__, settings
from obslab.errors import CliError

# In the order `obslab --help` lists them: the lab's lifecycle, then what acts on a lab.
SUBCOMMANDS: tuple[str, ...] = (
    "up", "status", "down", "restart", "serve", "generate", "doctor",
    "fault", "load", "rules", "alerts", "history", "slo", "ml", "drill", "secrets", "bench", "backup",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obslab", description="OpenTelemetry-native observability lab for a banking platform.",
    )
    parser.add_argument("--version", action="version", version=f"obslab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"obslab.cli.{name}")
        command = commands.add_parser(name, help=module.HELP)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def run(args: argparse.Namespace) -> int:
    return args.handler(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from obslab.lab.native import LabError

    try:
        return run(args)
    except (CliError, settings.ConfigError, LabError) as exc:
        print(f"obslab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("obslab: interrupted", file=sys.stderr)
        return 130
