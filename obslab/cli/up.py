"""``obslab up``: start the native lab."""

from __future__ import annotations

import argparse

from obslab.cli.lab import data_dir_option, native_lab

HELP = "start the native lab (foreground until Ctrl-C, or --detach)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data_dir_option(parser)
    parser.add_argument("--detach", action="store_true", help="return once every component is healthy")
    parser.add_argument("--profile", default="production", choices=["production", "fast"],
                        help="time profile: production intervals or scaled-down 'fast' ones (default: production)")
    parser.add_argument("--timeout", type=float, default=90.0, metavar="SECONDS",
                        help="how long to wait for every component to become healthy (default: 90)")
    parser.add_argument("--no-seed", action="store_true", help="do not create the demo customers")
    parser.add_argument("--no-traffic", action="store_true", help="do not start the load generator")


def run(args: argparse.Namespace) -> int:
    from obslab.profiles import profile

    return native_lab(args, profile=profile(args.profile)).up(
        detach=args.detach, timeout=args.timeout, seed=not args.no_seed, traffic=not args.no_traffic)
