"""What both ML services share: a periodic worker and honest staleness.

A detector that cannot read fresh inputs must not keep publishing its last verdict, and must
never compute on a half answer: it withdraws its verdict gauges (an absent series fires no
alert and draws a gap on a dashboard) and sets ``ml_input_stale{detector} 1``, which an alert
watches. The business keeps serving; the detector resumes by itself when Prometheus answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from flask import Flask, jsonify

from obslab import conventions as c
from obslab import settings
from obslab.ml.prometheus import PrometheusClient
from obslab.platform.app import ServiceContext, create_service_app
from obslab.telemetry import MetricSet

log = logging.getLogger(__name__)

ML_METRICS = (c.ML_INPUT_STALE, c.ML_LAST_EVALUATION, c.ML_EVALUATION_DURATION)


def prometheus_client() -> PrometheusClient:
    return PrometheusClient(settings.service_url(c.PROMETHEUS))


class Freshness:
    """The stale/fresh state of one detector, mirrored in its metrics."""

    def __init__(self, detector: str, metrics: MetricSet) -> None:
        self.detector = detector
        self.metrics = metrics
        self.reason: str | None = "no evaluation yet"
        self.last_fresh: float | None = None
        metrics.gauge(c.ML_INPUT_STALE).labels(detector=detector).set(1)

    def fresh(self, duration_s: float) -> None:
        self.reason = None
        self.last_fresh = time.time()
        self.metrics.gauge(c.ML_INPUT_STALE).labels(detector=self.detector).set(0)
        self.metrics.gauge(c.ML_LAST_EVALUATION).labels(detector=self.detector).set(self.last_fresh)
        self.metrics.histogram(c.ML_EVALUATION_DURATION).labels(detector=self.detector).observe(duration_s)

    def stale(self, reason: str) -> None:
        # Log a change of kind, not every new count in the same message.
        if self.reason is None or reason.split(":")[0] != self.reason.split(":")[0]:
            log.warning("inputs stale, verdicts withdrawn", extra={"detector": self.detector, "reason": reason})
        self.reason = reason
        self.metrics.gauge(c.ML_INPUT_STALE).labels(detector=self.detector).set(1)

    def describe(self) -> dict:
        return {"stale": self.reason is not None, "reason": self.reason, "last_fresh": self.last_fresh}


class PeriodicWorker(threading.Thread):
    """Runs ``step`` every ``interval`` seconds (from the start of one run to the next) until
    stopped; a failing step is logged and retried on the next tick, never kills the thread."""

    def __init__(self, name: str, interval: float, step: Callable[[], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self.step = step
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            try:
                self.step()
            except Exception:  # keep detecting: one bad evaluation must not end the service
                log.exception("periodic step failed", extra={"worker": self.name})
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop_event.set()


class MLDetector(Protocol):
    prometheus: PrometheusClient

    def status(self) -> dict: ...


def create_ml_app(name: str, make: Callable[[ServiceContext], MLDetector], *, collector: Callable[[Any], object],
                  step: Callable[[Any], Callable[[], object]], interval_s: Callable[[Any], float],
                  metric_specs: Iterable, start: bool,
                  extra_routes: Callable[[Flask, Any], None] | None = None) -> Flask:
    """An ML service: the common app, the detector built inside it, its verdict collector,
    readiness on Prometheus, ``/api/v1/status`` (and ``extra_routes``), and (``start``) the
    periodic worker.
    ``app.extensions[name]`` is the detector; tests call its step themselves with ``start=False``."""
    holder: dict[str, MLDetector] = {}

    def routes(app: Flask, ctx: ServiceContext) -> None:
        detector = holder["detector"] = make(ctx)
        ctx.metrics.registry.register(collector(detector))
        ctx.readiness_checks["prometheus"] = detector.prometheus.ready

        @app.get("/api/v1/status")
        def status():
            return jsonify(detector.status())

        if extra_routes is not None:
            extra_routes(app, detector)

    app = create_service_app(name, routes, metric_specs=[*ML_METRICS, *metric_specs])
    detector = app.extensions[name] = holder["detector"]
    if start:
        worker = PeriodicWorker(f"{name}-evaluation", interval_s(detector), step(detector))
        worker.start()
        app.extensions[f"{name}-worker"] = worker
    return app
