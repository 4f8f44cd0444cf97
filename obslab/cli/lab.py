"""What the lab's lifecycle commands (up, status, down, restart) share: the data directory option
and the native lab it names."""

from __future__ import annotations

import argparse

from obslab import settings


def data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="lab state directory (default: $OBSLAB_DATA_DIR or .obslab/)")


def native_lab(args: argparse.Namespace, **kwargs):
    from obslab.lab.native import NativeLab

    return NativeLab(settings.data_dir(args.data_dir), offset=settings.port_offset(), **kwargs)
