"""``obslab down``: stop a running lab."""

from __future__ import annotations

import argparse

from obslab.cli.lab import data_dir_option, native_lab

HELP = "stop a running lab"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data_dir_option(parser)


def run(args: argparse.Namespace) -> int:
    return native_lab(args).down()
