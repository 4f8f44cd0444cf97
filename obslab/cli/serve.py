"""``obslab serve NAME``: run one component in the foreground (what ``up`` runs under supervision)."""

from __future__ import annotations

import argparse

HELP = "run one component in the foreground (what `up` runs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="component name, e.g. gateway, accounts, trace-sink")
    parser.add_argument("--host", help="listen address (default: $OBSLAB_BIND_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default: the component's port + offset)")


def run(args: argparse.Namespace) -> int:
    from obslab.platform.serving import serve

    serve(args.name, host=args.host, port=args.port)
    return 0
