"""Past IIS and banking metrics in the lab's Prometheus, from minute one (``obslab history``).

Baselining and the ML detectors need weeks of data; a fresh lab has minutes. This command
simulates N days that end where the lab's stored data begins (the IIS model, the banking
model, business-hour and weekly seasonality, a few incidents), writes them as OpenMetrics text,
and turns that into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics`` inside the
lab's Prometheus data directory. Series carry the labels the live scrapes add (job, instance,
tier), so one query spans history and live data. The incidents are written to
``<data-dir>/history/incidents.json``: ground truth for evaluating detectors later.

Where history ends: it must not overlap what Prometheus already stores (blocks and head), so it
ends before the earliest stored sample, and at most five minutes before now. A running
Prometheus 2.42 notices new blocks on its own within a minute (its TSDB rescans the data
directory every minute; ``POST /-/reload`` reloads the configuration only, not blocks).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from obslab.lab import backfill
from obslab import conventions as c
from obslab import settings, topology
from obslab.lab.backfill import BLOCK_SECONDS
from obslab.iis_mock.clock import parse_time
from obslab.profiles import RETENTION_DAYS
from obslab.sim.banking import BankingModel, Target
from obslab.sim.iis import Effects, IisModel
from obslab.sim.iis_series import iis_series
from obslab.sim.incidents import Incident, iso8601, plan_incidents
from obslab.sim.series import Accumulator

K = c.FaultKind
MIN_DAYS, MAX_DAYS = 1, 30
MIN_STEP, MAX_STEP = 10, 150        # rate(x[5m]) needs two samples in five minutes
LIVE_MARGIN_SECONDS = 300           # room between history and live data scraped right after
PICKUP_TIMEOUT_SECONDS = 90         # Prometheus rescans its data directory every 60 s


# --- the lab's Prometheus ---------------------------------------------------------------------


@dataclass
class LabPrometheus:
    """The lab's Prometheus, if one answers and stores its data in our TSDB directory."""

    url: str
    flags: dict[str, str]
    head_min: float | None

    @classmethod
    def find(cls, tsdb: Path) -> LabPrometheus | None:
        url = settings.service_url(c.PROMETHEUS)
        try:
            flags = requests.get(f"{url}/api/v1/status/flags", timeout=2).json()["data"]
            if Path(flags.get("storage.tsdb.path", "")).resolve() != tsdb.resolve():
                return None
            head = requests.get(f"{url}/api/v1/status/tsdb", timeout=2).json()["data"]["headStats"]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return None
        head_min = head["minTime"] / 1000 if head.get("numSeries") and head["minTime"] < head["maxTime"] else None
        return cls(url, flags, head_min)

    def retention_days(self) -> float:
        """How long this Prometheus keeps data (its default, 15 days, when the flag says 0s)."""
        raw = self.flags.get("storage.tsdb.retention.time", "")
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
        seconds = int(raw[:-1]) * units[raw[-1]] if raw[:-1].isdigit() and raw[-1:] in units else 0
        return seconds / 86400 if seconds else 15.0

    def serves(self, at: float) -> bool:
        try:
            result = requests.get(f"{self.url}/api/v1/query", timeout=5, params={
                "query": f'count({c.IIS_APP_POOL_STATE.name}{{job="{c.IIS_MOCK}"}})', "time": at,
            }).json()["data"]["result"]
        except (requests.RequestException, ValueError, KeyError):
            return False
        return bool(result)


def earliest_stored(tsdb: Path, prometheus: LabPrometheus | None) -> tuple[float | None, str]:
    """Time of the earliest sample the TSDB holds (blocks or head), and how we know it."""
    starts = [b.min_time for b in backfill.blocks(tsdb)]
    if prometheus is not None and prometheus.head_min is not None:
        starts.append(prometheus.head_min)
    if starts:
        return min(starts), "where the data Prometheus already stores begins"
    if backfill.wal_has_data(tsdb):
        return _earliest_scrape_in_wal(tsdb), "where the data in Prometheus's write-ahead log begins"
    return None, ""


def _earliest_scrape_in_wal(tsdb: Path) -> float:
    # Only reached without blocks, so the WAL holds at most a few hours: dumping `up` is cheap.
    try:
        done = subprocess.run([backfill.promtool(), "tsdb", "dump", '--match={__name__="up"}', str(tsdb)],
                              capture_output=True, text=True, timeout=120, check=True)
        stamps = [int(line.rsplit(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("{")]
    except (subprocess.SubprocessError, ValueError, IndexError):
        stamps = []
    if not stamps:
        raise settings.ConfigError(
            f"cannot tell where the data in {tsdb} begins (Prometheus is not running); "
            "start the lab (`obslab up --detach`) or pass --end before the lab's first start")
    return min(stamps) / 1000


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Plan:
    days: int
    step: int
    seed: int
    start: float
    end: float
    why_end: str
    data_dir: Path
    tsdb: Path
    incidents: list[Incident] = field(default_factory=list)

    @property
    def history_dir(self) -> Path:
        return self.data_dir / "history"



def validate(args: argparse.Namespace) -> None:
    if not MIN_DAYS <= args.days <= MAX_DAYS:
        raise settings.ConfigError(
            f"--days must be between {MIN_DAYS} and {MAX_DAYS} (the lab keeps {RETENTION_DAYS} days "
            f"of metrics), got {args.days}")
    if not MIN_STEP <= args.step <= MAX_STEP:
        raise settings.ConfigError(
            f"--step must be between {MIN_STEP} and {MAX_STEP} seconds (rate() over 5m needs two samples "
            f"per five minutes), got {args.step}")


def make_plan(args: argparse.Namespace, prometheus: LabPrometheus | None, tsdb: Path, *,
              now: Callable[[], float] = time.time) -> Plan:
    validate(args)
    step = args.step
    stored, how = earliest_stored(tsdb, prometheus)
    if args.end is None:
        end, why = now() - LIVE_MARGIN_SECONDS, "5 minutes before now"
        if stored is not None and stored - step < end:
            end, why = stored - step, how
    else:
        try:
            end = now() if args.end.strip().lower() == "now" else parse_time(args.end)
        except settings.ConfigError as exc:
            raise settings.ConfigError(f"--end: {exc}") from None
        why = f"at --end {args.end}"
        if end > now():
            raise settings.ConfigError(f"--end {args.end} is in the future; history ends in the past")
        if stored is not None and end > stored - step:
            raise settings.ConfigError(
                f"--end {args.end} overlaps the data Prometheus already holds from {iso8601(stored)}; "
                f"pass --end {iso8601(stored - step)} or earlier, or leave --end out")
    end = (end // step) * step
    start = end - args.days * 86400
    plan = Plan(args.days, step, args.seed, start, end, why, settings.data_dir(args.data_dir), tsdb)
    if not args.no_incidents:
        plan.incidents = plan_incidents(start, end, step, args.seed)
    return plan


def _targets() -> dict[str, Target]:
    offset = settings.port_offset()
    return {name: Target(name, topology.component(name).address("native", offset=offset),
                         topology.component(name).tier)
            for name in (c.IIS_MOCK, c.GATEWAY, c.TRANSACTIONS, c.PAYMENTS)}


@dataclass
class Result:
    series: int = 0
    samples: int = 0
    windows: int = 0
    text_bytes: int = 0
    new_blocks: list[backfill.Block] = field(default_factory=list)
    block_bytes: int = 0
    seconds: float = 0.0


class Progress:
    """One rewritten line on a terminal; silent otherwise (logs and CI stay clean)."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.enabled = stream.isatty()

    def show(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"\r\033[K{text}")
            self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def generate(plan: Plan, *, keep_openmetrics: bool = False, progress: Progress | None = None) -> Result:
    """Simulate the plan's window, one OpenMetrics file per block window, each loaded by promtool
    while the next one is being written."""
    progress = progress or Progress()
    promtool = backfill.promtool()
    started = time.perf_counter()
    plan.tsdb.mkdir(parents=True, exist_ok=True)
    text_dir = plan.history_dir / "openmetrics"
    text_dir.mkdir(parents=True, exist_ok=True)
    before = {b.ulid for b in backfill.blocks(plan.tsdb)}

    targets = _targets()
    iis_labels = targets[c.IIS_MOCK].labels()
    faults = [i.fault() for i in plan.incidents]
    iis = IisModel(plan.seed, plan.step)
    banking = BankingModel(plan.seed, plan.step, targets)
    accumulator = Accumulator()
    timestamps = np.arange(plan.start + plan.step, plan.end + plan.step / 2, plan.step)
    windows = np.split(timestamps, np.nonzero(np.diff(timestamps // BLOCK_SECONDS))[0] + 1)
    result = Result(windows=len(windows))
    keys: set = set()
    running: tuple[subprocess.Popen, Path] | None = None
    try:
        for number, ts in enumerate(windows, start=1):
            progress.show(f"history: window {number}/{len(windows)} ({iso8601(ts[0])[:16]}), "
                          f"{result.samples:,} samples so far")
            batch = iis.simulate(ts, Effects.from_faults(faults, len(ts), timestamps=ts))
            series = accumulator.apply([*iis_series(batch, extra=iis_labels), *banking.series(ts, faults)])
            keys.update(s.key for s in series)
            path = text_dir / f"{int(ts[0])}.om"
            with path.open("w", buffering=1 << 20) as out:
                result.samples += backfill.write_openmetrics(out, ts, series)
            result.text_bytes += path.stat().st_size
            if running is not None:
                _finish(running, keep_openmetrics)
            running = (backfill.create_blocks(path, plan.tsdb, binary=promtool), path)
        if running is not None:
            _finish(running, keep_openmetrics)
            running = None
    finally:
        progress.done()
        if running is not None:
            running[0].kill()
            running[0].wait()
    result.series = len(keys)
    result.new_blocks = [b for b in backfill.blocks(plan.tsdb) if b.ulid not in before]
    result.block_bytes = sum(backfill.dir_bytes(b.path) for b in result.new_blocks)
    result.seconds = time.perf_counter() - started
    if not keep_openmetrics:
        _remove_if_empty(text_dir)
    return result


def _finish(running: tuple[subprocess.Popen, Path], keep: bool) -> None:
    process, path = running
    _, stderr = process.communicate()
    if process.returncode != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise settings.ConfigError(f"promtool could not turn {path} into blocks: {last}")
    if not keep:
        path.unlink(missing_ok=True)


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def write_incidents(plan: Plan) -> Path:
    """Add this run's incidents to ``incidents.json`` (earlier runs cover other windows)."""
    path = plan.history_dir / "incidents.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    existing: list[dict] = []
    if path.exists():
        try:
            existing = [i for i in json.loads(path.read_text()) if isinstance(i, dict)]
        except ValueError:
            existing = []
    window = (plan.start, plan.end)
    kept = [i for i in existing if not window[0] <= float(i.get("start_unix", -1)) <= window[1]]
    merged = sorted([*kept, *(i.to_json(plan.seed) for i in plan.incidents)], key=lambda i: i["start_unix"])
    path.write_text(json.dumps(merged, indent=2) + "\n")
    return path


def wait_for_pickup(prometheus: LabPrometheus, plan: Plan, progress: Progress) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < PICKUP_TIMEOUT_SECONDS:
        if prometheus.serves(plan.end):
            return time.monotonic() - started
        progress.show(f"waiting for Prometheus to load the new blocks "
                      f"({time.monotonic() - started:.0f} s; it rescans its data directory every minute)")
        time.sleep(2)
    return None
