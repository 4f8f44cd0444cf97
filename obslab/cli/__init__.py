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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``only`` the parser of that one subcommand: importing every
    subcommand's module cost each component's process 0.8 s of start-up and pandas, numpy and
    the rule generators in memory (``obslab serve`` is how every component starts)."""
    parser = argparse.ArgumentParser(
        prog="obslab", description="OpenTelemetry-native observability lab for a banking platform.",
    )
    parser.add_argument("--version", action="version", version=f"obslab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"obslab.cli.{name}")
        command = commands.add_parser(name, help=module.HELP)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def run(args: argparse.Namespace) -> int:
    return args.handler(args)


def chosen_subcommand(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), if it is one."""
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return word if word in SUBCOMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(only=chosen_subcommand(argv)).parse_args(argv)
    from obslab.lab.native import LabError

    try:
        return run(args)
    except (CliError, settings.ConfigError, LabError) as exc:
        print(f"obslab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("obslab: interrupted", file=sys.stderr)
        return 130
