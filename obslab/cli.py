"""The ``obslab`` command.

Every failure a user can fix ends the command with a non-zero exit status and one line on
stderr that says what to do.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence

from obslab import __version__, settings
from obslab.errors import CliError


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="lab state directory (default: $OBSLAB_DATA_DIR or .obslab/)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obslab", description="OpenTelemetry-native observability lab for a banking platform.",
    )
    parser.add_argument("--version", action="version", version=f"obslab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start the native lab (foreground until Ctrl-C, or --detach)")
    _data_dir_option(up)
    up.add_argument("--detach", action="store_true", help="return once every component is healthy")
    up.add_argument("--profile", default="production", choices=["production", "fast"],
                    help="time profile: production intervals or scaled-down 'fast' ones (default: production)")
    up.add_argument("--timeout", type=float, default=90.0, metavar="SECONDS",
                    help="how long to wait for every component to become healthy (default: 90)")
    up.add_argument("--no-seed", action="store_true", help="do not create the demo customers")
    up.add_argument("--no-traffic", action="store_true", help="do not start the load generator")

    status = commands.add_parser("status", help="health of every component of a running lab")
    _data_dir_option(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    down = commands.add_parser("down", help="stop a running lab")
    _data_dir_option(down)

    restart = commands.add_parser("restart", help="restart (or start) one component of the running lab: "
                                                   "a mitigation the runbooks name")
    _data_dir_option(restart)
    restart.add_argument("name", help="component name, e.g. fraud, gateway, prometheus")

    serve = commands.add_parser("serve", help="run one component in the foreground (what `up` runs)")
    serve.add_argument("name", help="component name, e.g. gateway, accounts, trace-sink")
    serve.add_argument("--host", help="listen address (default: $OBSLAB_BIND_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: the component's port + offset)")

    generate = commands.add_parser("generate", help="regenerate the committed generated files")
    generate.add_argument("--check", action="store_true",
                          help="only report stale generated files (exit 1 if any)")

    doctor = commands.add_parser("doctor", help="check (and with --install fix) what this machine lacks")
    doctor.add_argument("--install", action="store_true",
                        help="install missing OS packages (root on Debian) and start a stopped MariaDB")
    doctor.add_argument("--mariadb", action="store_true", help="also require MariaDB on 127.0.0.1:3306")

    for name, module_name, help_text in MODULE_COMMANDS:
        module = importlib.import_module(module_name)
        command = commands.add_parser(name, help=help_text)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)

    bench = commands.add_parser("bench", help="benchmarks that print figures")
    bench_kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    api = bench_kinds.add_parser("api", help="transfers/s and latency through the gateway, telemetry on vs off")
    api.add_argument("--transfers", type=int, default=1000, help="transfers per run (default: 1000)")
    api.add_argument("--concurrency", type=int, default=8, help="parallel clients (default: 8)")
    api.add_argument("--warmup", type=int, default=100, help="untimed transfers first (default: 100)")
    api.add_argument("--port-offset", type=int, default=20000,
                     help="ports of the labs the benchmark starts = defaults + this (default: 20000; every "
                          "port stays below the kernel's ephemeral range)")
    api.add_argument("--json", action="store_true", help="print one JSON object with the figures")
    api.set_defaults(handler=_bench_api)
    for name, module_name, help_text in BENCH_COMMANDS:
        module = importlib.import_module(module_name)
        benchmark = bench_kinds.add_parser(name, help=help_text)
        module.add_arguments(benchmark)
        benchmark.set_defaults(handler=module.run)
    for name, handler in BUILT_IN.items():
        commands.choices[name].set_defaults(handler=handler)
    return parser


def _lab(args: argparse.Namespace, **kwargs):
    from obslab.native.lab import NativeLab

    return NativeLab(settings.data_dir(args.data_dir), offset=settings.port_offset(), **kwargs)


def _status(args: argparse.Namespace) -> int:
    lab = _lab(args)
    if not lab.running():
        if args.json:
            print(json.dumps({"components": [], "running": False}))
        else:
            print(f"No lab is running from {lab.data_dir}; start one with `obslab up --detach`.", file=sys.stderr)
        return 1
    statuses = lab.statuses()
    if args.json:
        print(json.dumps({"components": [
            {"name": s.name, "url": s.url, "healthy": s.healthy} for s in statuses
        ]}))
    else:
        lab.print_table(statuses)
    return 0 if all(s.healthy for s in statuses) else 1


def _restart(args: argparse.Namespace) -> int:
    """Natively through the lab's supervisor; a compose lab through `docker compose restart`."""
    lab = _lab(args)
    if not lab.running():
        import shutil
        import subprocess

        docker = shutil.which("docker")
        if docker is None:
            raise CliError(f"no lab is running from {lab.data_dir} (and no docker for a compose lab); "
                           "start one with `obslab up --detach`")
        return subprocess.run([docker, "compose", "restart", args.name], check=False).returncode
    from obslab.native.supervisor import SupervisorError

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


def _up(args: argparse.Namespace) -> int:
    from obslab.profiles import profile

    return _lab(args, profile=profile(args.profile)).up(
        detach=args.detach, timeout=args.timeout, seed=not args.no_seed, traffic=not args.no_traffic)


def _down(args: argparse.Namespace) -> int:
    return _lab(args).down()


def _serve(args: argparse.Namespace) -> int:
    from obslab.platform.serving import serve

    serve(args.name, host=args.host, port=args.port)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from obslab import generate

    return generate.run(check=args.check)


def _doctor(args: argparse.Namespace) -> int:
    from obslab.native import doctor

    return doctor.run(install_missing=args.install, need_mariadb=args.mariadb)


def _bench_api(args: argparse.Namespace) -> int:
    from obslab.bench.api import run_api_benchmark

    return run_api_benchmark(transfers=args.transfers, concurrency=args.concurrency, warmup=args.warmup,
                             port_offset=args.port_offset, as_json=args.json)


# Every subcommand is a parser and a handler: the lab's own below, the rest in their modules,
# each with add_arguments(parser) and run(args) (imported when the parser is built).
BUILT_IN: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": _up, "status": _status, "down": _down, "restart": _restart, "serve": _serve,
    "generate": _generate, "doctor": _doctor,
}
MODULE_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("fault", "obslab.faultcli", "set, list and clear injected faults (the lab's fault-injector)"),
    ("load", "obslab.services.loadgen.cli",
     "run realistic user journeys against a gateway (what `up` runs in the background)"),
    ("rules", "obslab.rulescli", "alert and recording rules from prometheus/spec/: generate, list"),
    ("alerts", "obslab.alertscli", "notifications Alertmanager delivered to the lab's alert-receiver"),
    ("history", "obslab.history", "write N days of past IIS and banking metrics into Prometheus"),
    ("ml", "obslab.mlcli", "the ML detectors' models: train"),
    ("drill", "obslab.drills.cli",
     "incident drills: break the lab on purpose, check who is paged in time, score it"),
    ("secrets", "obslab.secretscli", "the lab's per-deployment secrets (keys, tokens, passwords): init"),
)
BENCH_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("ml", "obslab.bench.ml", "baselining refit of N series and DDoS inference latency: wall time, peak memory"),
    ("nab", "obslab.bench.nab", "the baselining detectors on the Numenta Anomaly Benchmark, scored by NAB's rules"),
)


def run(args: argparse.Namespace) -> int:
    return args.handler(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from obslab.native.lab import LabError

    try:
        return run(args)
    except (CliError, settings.ConfigError, LabError) as exc:
        print(f"obslab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("obslab: interrupted", file=sys.stderr)
        return 130
