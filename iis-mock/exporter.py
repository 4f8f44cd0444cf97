"""iis-mock: the Windows exporter stand-in, serving the simulated IIS estate on port 9182.

``/metrics`` exposes exactly the seed families (``windows_iis_*``, ``windows_netframework_*``,
``windows_custom_errors_total``), in Prometheus text or OpenMetrics as the scraper asks. The
counters advance in whole simulated steps up to the clock's now: a background ticker keeps up
every second, and each scrape catches up whatever is left, under a lock, so a scrape never
waits long. Faults from the control plane (``app_pool_crash``, ``volume_surge``,
``exception_storm``, ``latency``, ``error_rate``) change the steps simulated while they are
active (see README.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections.abc import Iterator, Sequence

import numpy as np
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from obslab import conventions as c
from obslab.faults.board import FaultBoard, process_board
from obslab.iis_mock.clock import SimClock, clock_from_environment, seed_from_environment, step_from_environment
from obslab.platform.app import register_operational_routes
from obslab.platform.errors import register_error_handlers
from obslab.platform.identity import Signer
from obslab.sim.iis import Effects, IisModel
from obslab.sim.iis_series import iis_series
from obslab.sim.series import Accumulator, Series
from obslab.telemetry import configure_logging

log = logging.getLogger(__name__)

# Steps simulated per model call when catching up (bounds memory after a long pause).
MAX_STEPS_PER_CALL = 20_000
TICK_SECONDS = 1.0


class IisExporter:
    """The live estate: simulated steps up to the clock's now, and their running totals.

    Step ``k`` ends at ``clock.start + k x step``; step 0 is simulated at once, so every series
    exists from the first scrape.
    """

    def __init__(self, *, clock: SimClock, board: FaultBoard, seed: int, step_seconds: float,
                 sites: Sequence[c.IisSite] = c.IIS_SITES) -> None:
        self.clock = clock
        self.board = board
        self.sites = tuple(sites)
        self.model = IisModel(seed, step_seconds, sites=self.sites)
        self._accumulator = Accumulator()
        self._latest: list[Series] = []
        self._next_step = 0
        self._active_faults: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.advance()

    @classmethod
    def from_environment(cls) -> IisExporter:
        clock = clock_from_environment()
        board = process_board().authenticate_with(Signer.load(c.IIS_MOCK))
        return cls(clock=clock, board=board, seed=seed_from_environment(),
                   step_seconds=step_from_environment(clock.speed))

    @property
    def step(self) -> float:
        return self.model.step

    def sim_time(self) -> float:
        """End of the last simulated step."""
        return self.clock.start + (self._next_step - 1) * self.step

    def advance(self) -> int:
        """Simulate every whole step that ended by the clock's now; returns how many."""
        with self._lock:
            last = math.floor((self.clock.now() - self.clock.start) / self.step + 1e-9)
            pending = last + 1 - self._next_step
            if pending <= 0:
                return 0
            faults = self.board.active()
            self._note_faults(faults)
            done = 0
            while done < pending:
                count = min(MAX_STEPS_PER_CALL, pending - done)
                first = self._next_step + done
                timestamps = self.clock.start + self.step * (first + np.arange(count, dtype=float))
                effects = Effects.from_faults(faults, count, sites=self.sites)
                batch = self.model.simulate(timestamps, effects)
                self._latest = self._accumulator.apply(iis_series(batch, self.sites))
                done += count
            self._next_step += pending
            return pending

    def _note_faults(self, faults) -> None:
        ids = frozenset(f.id for f in faults)
        if ids != self._active_faults:
            log.info("faults applied to the simulated estate changed",
                     extra={"faults": [f.describe() for f in faults]})
            self._active_faults = ids

    # --- prometheus_client Collector protocol ------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            latest = list(self._latest)
        yield from families(latest)

    # --- background ticker --------------------------------------------------------------------

    def start(self, interval: float = TICK_SECONDS) -> IisExporter:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, args=(interval,), name="iis-ticker", daemon=True)
            self._ticker.start()
        return self

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.advance()
            except Exception:  # a bad step must not stop the estate; the next tick retries
                log.exception("simulating the IIS estate failed")

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)


def families(series: Sequence[Series]) -> list[Metric]:
    """prometheus_client families holding each series' last value (for the text encoders)."""
    grouped: dict[str, list[Series]] = {}
    for item in series:
        grouped.setdefault(item.spec.name, []).append(item)
    out: list[Metric] = []
    for items in grouped.values():
        spec = items[0].spec
        names = list(spec.labels)
        if spec.kind == "histogram":
            family = HistogramMetricFamily(spec.name, spec.help, labels=names)
            points: dict[tuple[str, ...], dict] = {}
            for item in items:
                labels = dict(item.labels)
                key = tuple(labels[n] for n in names)
                point = points.setdefault(key, {"buckets": [], "sum": 0.0})
                if item.name.endswith("_bucket"):
                    point["buckets"].append((labels["le"], float(item.values[-1])))
                elif item.name.endswith("_sum"):
                    point["sum"] = float(item.values[-1])
            for key, point in points.items():
                family.add_metric(list(key), point["buckets"], point["sum"])
        else:
            kind = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            family = kind(spec.name, spec.help, labels=names)
            for item in items:
                labels = dict(item.labels)
                family.add_metric([labels[n] for n in names], float(item.values[-1]))
        out.append(family)
    return out


def create_app(*, exporter: IisExporter | None = None) -> Flask:
    """The iis-mock app; without ``exporter``, one configured from the environment, ticking."""
    configure_logging(c.IIS_MOCK)
    exporter = exporter or IisExporter.from_environment().start()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter)
    app = Flask(c.IIS_MOCK)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    register_error_handlers(app)
    app.extensions["iis_mock"] = exporter

    def describe() -> dict:
        return {
            "sim_time": dt.datetime.fromtimestamp(exporter.sim_time(), dt.timezone.utc).isoformat(
                timespec="milliseconds"),
            "speed": exporter.clock.speed, "step_seconds": exporter.step,
            "active_faults": [f.describe() for f in exporter.board.active()],
        }

    register_operational_routes(app, name=c.IIS_MOCK, registry=registry, describe=describe,
                                before_scrape=exporter.advance)

    log.info("iis-mock configured", extra={
        "speed": exporter.clock.speed, "step_seconds": exporter.step, "seed": exporter.model.seed,
        "sites": [s.site for s in exporter.sites],
    })
    return app
