"""The ddos-detector service (port 8091): a thin loop around the features and the model.

Every evaluation interval it asks Prometheus for the feature inputs, scores them and publishes
the seed's ``ddos_*`` gauges with per-model scores, feature values and contributions. With no
model yet it trains one from the lab's own recent traffic as soon as there is enough (a fresh
lab learns its normal in its first minutes); a model trained by ``obslab ml train ddos`` is
picked up when its file changes. Every ``ddos_retrain_s`` it trains a candidate on the latest
window and keeps it only if it does at least as well on the validation set as the current one.

``GET /api/v1/status`` shows the model's metadata and the last verdict with its reasons.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from flask import Flask
from prometheus_client.core import GaugeMetricFamily

from obslab import conventions as c
from obslab import profiles, settings
from obslab.ml.ddos import store
from obslab.ml.ddos.features import FEATURE_NAMES, Windows, exprs, feature_row
from obslab.ml.ddos.model import DDoSModel, Verdict
from obslab.ml.ddos.retrain import RetrainOutcome, retrain
from obslab.ml.ddos.training import NotEnoughData
from obslab.ml.prometheus import PrometheusClient, PrometheusUnavailable
from obslab.ml.runtime import Freshness, create_ml_app, prometheus_client
from obslab.platform.app import ServiceContext
from obslab.profiles import Profile

log = logging.getLogger(__name__)


def windows(profile: Profile) -> Windows:
    return Windows(signal_s=profile.ddos_signal_window_s, baseline_s=profile.ddos_baseline_window_s,
                   lag_s=profile.ddos_baseline_lag_s,
                   resolution_s=max(profile.ml_evaluation_s, profile.ddos_signal_window_s // 2))


def model_dir(data_dir: Path | None = None) -> Path:
    """``OBSLAB_DDOS_MODEL_DIR``, else ``<data-dir>/ml/ddos`` (the lab's data directory by default)."""
    return settings.DDOS_MODEL_DIR.get() or (data_dir or settings.data_dir()) / "ml" / "ddos"


class VerdictCollector:
    """The verdict gauges, present only while the last evaluation was fresh."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    def describe(self):
        return []

    def collect(self):
        verdict, model = self.detector.current()
        if model is not None:
            threshold = GaugeMetricFamily(c.DDOS_THRESHOLD.name, c.DDOS_THRESHOLD.help)
            threshold.add_metric([], model.threshold)
            trained = GaugeMetricFamily(c.DDOS_MODEL_TRAINED.name, c.DDOS_MODEL_TRAINED.help)
            trained.add_metric([], float(model.metadata.get("trained_at", 0.0)))
            yield threshold
            yield trained
        if verdict is None:
            return
        row, result = verdict
        for spec, value in ((c.DDOS_DETECTION_SCORE, result.score), (c.DDOS_CONFIDENCE, result.confidence),
                            (c.DDOS_BINARY_PREDICTION, 1.0 if result.attack else 0.0)):
            family = GaugeMetricFamily(spec.name, spec.help)
            family.add_metric([], value)
            yield family
        per_model = GaugeMetricFamily(c.DDOS_MODEL_SCORE.name, c.DDOS_MODEL_SCORE.help, labels=[c.L_MODEL])
        for name, value in result.model_scores.items():
            per_model.add_metric([name], value)
        yield per_model
        values = GaugeMetricFamily(c.DDOS_FEATURE_VALUE.name, c.DDOS_FEATURE_VALUE.help, labels=[c.L_FEATURE])
        contributions = GaugeMetricFamily(c.DDOS_FEATURE_CONTRIBUTION.name, c.DDOS_FEATURE_CONTRIBUTION.help,
                                          labels=[c.L_FEATURE])
        for name, value in zip(FEATURE_NAMES, row):
            values.add_metric([name], float(value))
            contributions.add_metric([name], result.contributions[name])
        yield values
        yield contributions


class Detector:
    def __init__(self, ctx: ServiceContext, prometheus: PrometheusClient, profile: Profile, directory: Path) -> None:
        self.ctx = ctx
        self.prometheus = prometheus
        self.profile = profile
        self.windows = windows(profile)
        self.exprs = exprs(self.windows)
        self.directory = directory
        self.freshness = Freshness(c.DDOS_DETECTOR, ctx.metrics)
        self._lock = threading.Lock()
        self._model: DDoSModel | None = None
        self._model_mtime: float | None = None
        self._model_problem: str | None = None
        self._verdict: tuple | None = None
        self._last_retrain = time.time()
        self.last_retrain: dict | None = None
        predictions = ctx.metrics.counter(c.DDOS_MODEL_PREDICTIONS)
        for outcome in ("attack", "normal"):
            predictions.labels(prediction=outcome)
        retrains = ctx.metrics.counter(c.DDOS_RETRAINS)
        for outcome in ("accepted", "refused", "failed"):
            retrains.labels(outcome=outcome)

    def current(self) -> tuple[tuple | None, DDoSModel | None]:
        with self._lock:
            return self._verdict, self._model

    # --- model lifecycle ----------------------------------------------------------------------

    def _load_if_changed(self) -> None:
        path = self.directory / store.MODEL_FILE
        mtime = path.stat().st_mtime if path.exists() else None
        if mtime is None or mtime == self._model_mtime:
            return
        try:
            model = store.load(self.directory)
        except store.ModelUnusable as exc:
            self._model_problem = str(exc)
            self._model_mtime = mtime
            log.error("model unusable", extra={"reason": str(exc)})
            return
        with self._lock:
            self._model, self._model_mtime, self._model_problem = model, mtime, None
        log.info("model loaded", extra={"path": str(path), "trained_at": model.metadata.get("trained_at")})

    def _train(self, source: str) -> RetrainOutcome:
        end = time.time()
        outcome = retrain(self.prometheus, self.windows, start=end - self.profile.ddos_training_window_s, end=end,
                          step=float(self.profile.ml_evaluation_s), directory=self.directory,
                          current=self._model, source=source, min_rows=self.profile.ddos_min_training_rows)
        self.ctx.metrics.count(c.DDOS_RETRAINS, outcome="accepted" if outcome.accepted else "refused")
        self.last_retrain = outcome.summary()
        if outcome.accepted:
            self._load_if_changed()
        return outcome

    def _maintain_model(self) -> None:
        self._load_if_changed()
        due = time.time() - self._last_retrain >= self.profile.ddos_retrain_s
        if self._model is not None and not due:
            return
        try:
            self._train("bootstrap" if self._model is None else "scheduled")
        except NotEnoughData as exc:
            self._model_problem = f"learning this lab's normal traffic: {exc}"
        except PrometheusUnavailable:
            raise
        except Exception as exc:  # a failed retrain keeps the current model
            self.ctx.metrics.count(c.DDOS_RETRAINS, outcome="failed")
            log.exception("retraining failed")
            self._model_problem = f"retraining failed: {type(exc).__name__}: {exc}"
        finally:
            if self._model is not None or due:
                self._last_retrain = time.time()

    # --- one evaluation -----------------------------------------------------------------------

    def evaluate(self) -> Verdict | None:
        started = time.perf_counter()
        try:
            self._maintain_model()
            at = time.time()
            signals = {name: self.prometheus.scalar(expr, at) for name, expr in self.exprs.items()}
        except PrometheusUnavailable as exc:
            return self._stale(str(exc))
        row = feature_row(signals)
        if row is None:
            missing = sorted(name for name, value in signals.items() if value != value)
            return self._stale(f"no gateway traffic to judge (missing: {', '.join(missing) or 'traffic'})")
        if self._model is None:
            return self._stale(self._model_problem or "no model yet")
        verdict = self._model.verdict(row)
        with self._lock:
            self._verdict = (row, verdict)
        self.ctx.metrics.count(c.DDOS_MODEL_PREDICTIONS, prediction="attack" if verdict.attack else "normal")
        self.freshness.fresh(time.perf_counter() - started)
        return verdict

    def _stale(self, reason: str) -> None:
        with self._lock:
            self._verdict = None
        self.freshness.stale(reason)
        return None

    def status(self) -> dict:
        verdict, model = self.current()
        body: dict = {"detector": c.DDOS_DETECTOR, "profile": self.profile.name, **self.freshness.describe(),
                      "model": None, "model_problem": self._model_problem, "last_retrain": self.last_retrain}
        if model is not None:
            body["model"] = model.metadata
        if verdict is not None:
            row, result = verdict
            body["verdict"] = {
                "score": round(result.score, 4), "confidence": round(result.confidence, 4), "attack": result.attack,
                "hostile_score": round(result.hostile, 4),
                "models": {k: round(v, 4) for k, v in result.model_scores.items()},
                "features": {n: round(float(v), 4) for n, v in zip(FEATURE_NAMES, row)},
                "contributions": {n: round(v, 4) for n, v in sorted(result.contributions.items(),
                                                                     key=lambda kv: -kv[1])},
            }
        return body


def create_app(prometheus: PrometheusClient | None = None, profile: Profile | None = None,
               directory: Path | None = None, start: bool = True) -> Flask:
    return create_ml_app(
        c.DDOS_DETECTOR,
        lambda ctx: Detector(ctx, prometheus or prometheus_client(), profile or profiles.active(),
                             directory or model_dir()),
        collector=VerdictCollector, step=lambda d: d.evaluate, interval_s=lambda d: d.profile.ml_evaluation_s,
        metric_specs=[c.DDOS_MODEL_PREDICTIONS, c.DDOS_RETRAINS], start=start)
