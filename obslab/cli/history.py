"""``obslab history --days N``: write N days of simulated past metrics into the lab's Prometheus
(the simulation and loading: :mod:`obslab.lab.history`)."""

from __future__ import annotations

import argparse
import time

from obslab import settings
from obslab.lab import history
from obslab.profiles import RETENTION_DAYS
from obslab.sim.incidents import DEFAULT_SEED, iso8601

HELP = "write N days of past IIS and banking metrics into Prometheus"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, required=True, metavar="N",
                        help=f"days of history to write ({history.MIN_DAYS}-{history.MAX_DAYS}; the lab keeps {RETENTION_DAYS})")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="lab state directory (default: $OBSLAB_DATA_DIR or .obslab/)")
    parser.add_argument("--step", type=int, default=60, metavar="SECONDS",
                        help=f"seconds between samples ({history.MIN_STEP}-{history.MAX_STEP}, default: 60)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="N",
                        help=f"seed of the simulated traffic and incident times (default: {DEFAULT_SEED})")
    parser.add_argument("--end", metavar="ISO8601|now",
                        help="end of the history (default: where the stored data begins, at most 5 min ago)")
    parser.add_argument("--no-incidents", action="store_true", help="no injected incidents: a clean baseline")
    parser.add_argument("--no-wait", action="store_true",
                        help="do not wait for a running Prometheus to pick up the new blocks")
    parser.add_argument("--keep-openmetrics", action="store_true",
                        help="keep the OpenMetrics files under <data-dir>/history/openmetrics/")


def run(args: argparse.Namespace) -> int:
    history.validate(args)
    data_dir = settings.data_dir(args.data_dir)
    tsdb = data_dir / "prometheus" / "data"
    prometheus = history.LabPrometheus.find(tsdb)
    plan = history.make_plan(args, prometheus, tsdb)
    progress = history.Progress()
    result = history.generate(plan, keep_openmetrics=args.keep_openmetrics, progress=progress)
    labels = history.write_incidents(plan)

    print(f"History: {plan.days} days, {iso8601(plan.start)} .. {iso8601(plan.end)}, one sample every {plan.step} s")
    print(f"  ends {plan.why_end}")
    print(f"  {result.series:,} series, {result.samples:,} samples, {result.seconds:.1f} s")
    print(f"  {len(result.new_blocks)} blocks written to {plan.tsdb} ({result.block_bytes / 1e6:.1f} MB on disk; "
          f"{result.text_bytes / 1e6:.0f} MB of OpenMetrics text "
          f"{'kept in ' + str(plan.history_dir / 'openmetrics') if args.keep_openmetrics else 'removed'})")
    print(f"  {len(plan.incidents)} incidents; labels in {labels}")
    if prometheus is None:
        print("Prometheus is not running on this data directory: it loads the blocks when the lab starts "
              "(`obslab up`).")
        return 0
    retention = prometheus.retention_days()
    if (time.time() - plan.start) / 86400 > retention:
        print(f"! Prometheus keeps {retention:g} days: history older than that is deleted at its next "
              f"compaction. Start it with --storage.tsdb.retention.time={RETENTION_DAYS}d (as `obslab up` does).")
    if args.no_wait:
        print(f"Prometheus at {prometheus.url} loads the new blocks on its own within a minute "
              "(no restart or reload needed; /-/reload does not load blocks).")
        return 0
    waited = history.wait_for_pickup(prometheus, plan, progress)
    progress.done()
    if waited is None:
        print(f"! Prometheus at {prometheus.url} does not serve the history after {history.PICKUP_TIMEOUT_SECONDS} s; "
              "restart it (`obslab down && obslab up --detach`).")
        return 1
    print(f"Prometheus at {prometheus.url} serves the history now (picked it up after {waited:.0f} s, "
          "without a restart).")
    return 0
