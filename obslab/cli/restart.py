"""``obslab restart NAME``: restart (or start) one component, a mitigation the runbooks name.

Natively through the lab's supervisor; a compose lab through ``docker compose restart``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess

from obslab.cli.lab import data_dir_option, native_lab
from obslab.errors import CliError

HELP = "restart (or start) one component of the running lab: a mitigation the runbooks name"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data_dir_option(parser)
    parser.add_argument("name", help="component name, e.g. fraud, gateway, prometheus")


def run(args: argparse.Namespace) -> int:
    lab = native_lab(args)
    if not lab.running():
        docker = shutil.which("docker")
        if docker is None:
            raise CliError(f"no lab is running from {lab.data_dir} (and no docker for a compose lab); "
                           "start one with `obslab up --detach`")
        return subprocess.run([docker, "compose", "restart", args.name], check=False).returncode
    from obslab.lab.supervisor import SupervisorError

    names = [component.name for component in lab.manifest()]
    if args.name not in names:
        raise CliError(f"unknown component {args.name!r}; the lab runs: {', '.join(names)}")
    try:
        state = lab.supervisor.processes().get(args.name)
        if state is not None and state.state == "RUNNING":
            lab.supervisor.stop_program(args.name)
        lab.supervisor.start_program(args.name)
    except (SupervisorError, OSError) as exc:
        raise CliError(f"could not restart {args.name}: {exc}") from None
    print(f"restarted {args.name}")
    return 0
