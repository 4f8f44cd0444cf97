"""``obslab bench BENCHMARK``: benchmarks that print figures; each is a module of
:mod:`obslab.bench` with ``add_arguments(parser)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import importlib

HELP = "benchmarks that print figures"

BENCHMARKS: tuple[tuple[str, str], ...] = (
    ("api", "transfers/s and latency through the gateway, telemetry on vs off"),
    ("flood", "the gateway's answers/s, CPU and customers' latency under a DDoS flood"),
    ("ml", "baselining refit of N series and DDoS inference latency: wall time, peak memory"),
    ("nab", "the baselining detectors on the Numenta Anomaly Benchmark, scored by NAB's rules"),
    ("ddos", "the DDoS detector through legitimate surges and floods over a fresh lab's life"),
    ("lab", "the whole native lab with traffic: memory (PSS) and CPU per component, head series, start-up time"),
    ("profile", "py-spy on every service under saturating transfers: CPU per transfer by service and layer, "
                "and a flame graph"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    for name, help_text in BENCHMARKS:
        module = importlib.import_module(f"obslab.bench.{name}")
        benchmark = kinds.add_parser(name, help=help_text)
        module.add_arguments(benchmark)
        benchmark.set_defaults(benchmark=module.run)


def run(args: argparse.Namespace) -> int:
    return args.benchmark(args)
