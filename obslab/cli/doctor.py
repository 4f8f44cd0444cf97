"""``obslab doctor [--install]``: what this machine lacks for the native lab, and the fix."""

from __future__ import annotations

import argparse

HELP = "check (and with --install fix) what this machine lacks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--install", action="store_true",
                        help="install missing OS packages (root on Debian) and start a stopped MariaDB")
    parser.add_argument("--mariadb", action="store_true", help="also require MariaDB on 127.0.0.1:3306")


def run(args: argparse.Namespace) -> int:
    from obslab.lab import doctor

    return doctor.run(install_missing=args.install, need_mariadb=args.mariadb)
