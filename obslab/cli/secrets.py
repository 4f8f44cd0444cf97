"""``obslab secrets init``: generate the lab's per-deployment secrets (what `obslab up` does itself).

Compose runs it once per project, in a one-shot container, before anything else starts
(``--compose``: also the MySQL and Grafana passwords, and each folder owned by the user of the
image that reads it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from obslab import secrets

# The users the images run as: ours (Dockerfile), mysql:8.0, grafana/grafana, prom/alertmanager.
COMPOSE_OWNERS = secrets.Owners(components=(10001, 10001), mysql=(999, 999), grafana=(472, 0),
                                alertmanager=(65534, 65534))


HELP = "the lab's per-deployment secrets (keys, tokens, passwords): init"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="secrets_action", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="generate every missing secret (existing ones are kept)")
    init.add_argument("--dir", type=Path, help="where (default: $OBSLAB_SECRETS_DIR or <data dir>/run/secrets)")
    init.add_argument("--data-dir", metavar="DIR", help="lab state directory (default: $OBSLAB_DATA_DIR or .obslab/)")
    init.add_argument("--compose", action="store_true",
                      help="the compose stack's secrets too (MySQL, Grafana), owned by each image's user")


def run(args: argparse.Namespace) -> int:
    from obslab.generators import compose

    directory = args.dir.resolve() if args.dir else secrets.secrets_dir(args.data_dir)
    written = secrets.init_secrets(
        directory, secrets.lab_components(),
        database_components=compose.DATABASE_COMPONENTS if args.compose else (),
        compose=args.compose, owners=COMPOSE_OWNERS if args.compose else secrets.Owners(),
    )
    print(f"{len(written)} secret(s) generated in {directory}" + (": " + ", ".join(written) if written else
                                                                  " (all were there already)"))
    return 0
