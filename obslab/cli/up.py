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
    parser.add_argument("--backup-every", metavar="DURATION",
                        help="take a backup this often while the lab runs, e.g. 6h (default: $OBSLAB_BACKUP_EVERY, "
                             "or never; see `obslab backup`)")
    parser.add_argument("--backup-keep", type=int, metavar="N",
                        help="scheduled backups to keep (default: $OBSLAB_BACKUP_KEEP or 7)")


def run(args: argparse.Namespace) -> int:
    from obslab import settings
    from obslab.errors import CliError
    from obslab.profiles import profile

    every_text = args.backup_every or settings.BACKUP_EVERY.get()
    every = settings.parse_duration(every_text) if every_text else None
    if every is not None and every < 60:
        raise CliError(f"--backup-every must be at least 1m, got {every_text}")
    keep = args.backup_keep if args.backup_keep is not None else settings.BACKUP_KEEP.get()
    if keep < 1:
        raise CliError(f"--backup-keep must be at least 1, got {keep}")
    return native_lab(args, profile=profile(args.profile)).up(
        detach=args.detach, timeout=args.timeout, seed=not args.no_seed, traffic=not args.no_traffic,
        backup_every=every, backup_keep=keep)
