"""The baseliner service (port 8092): every baselining algorithm on every target series.

Two loops over one set of targets (PromQL expressions that each return one series):

- **refit** every ``baseline_refit_s`` (5 min in production): range-query ``baseline_history_s``
  of every target at the evaluation step and fit every algorithm on the whole batch at once;
- **score** every ``ml_evaluation_s``: read each target's current value, ask each fitted
  baseline for its band *now*, publish observed/expected/lower/upper/score per series and
  algorithm, and the ensemble's band as the recommended threshold.

Targets default to :data:`DEFAULT_TARGETS` (the golden signals the runbooks care about);
``OBSLAB_BASELINE_TARGETS`` names a YAML file with a list of ``{name, service, expr,
min_half_width}`` to use instead. Every band is at least ``min_half_width`` wide on each side
(a ticket for a 0.1 % error ratio after a flat zero history helps nobody) and, for a series
that was never negative, never reaches below 0. A series with too little history or no current value is withdrawn, not guessed;
without Prometheus every gauge is withdrawn and ``ml_input_stale{detector="baseliner"}`` is 1.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from obslab import conventions as c
from obslab import profiles, settings
from obslab.ml.baselining import ALGORITHMS, LevelNovelty, ensemble
from obslab.ml.baselining.ensemble import median_band
from obslab.ml.baselining.novelty import NoveltyReference
from obslab.ml.prometheus import PrometheusClient, PrometheusUnavailable
from obslab.ml.protocol import Baseline, BaselineAlgorithm, deviation_score
from obslab.ml.runtime import Freshness, create_ml_app, prometheus_client
from obslab.platform.app import ServiceContext
from obslab.profiles import Profile

log = logging.getLogger(__name__)
ENSEMBLE = "ensemble"   # obslab.ml.baselining.Ensemble.name
LEVEL_NOVELTY = LevelNovelty.name
# Fewer points than this and no algorithm's band means anything yet.
MIN_HISTORY_POINTS = 20


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    service: str
    expr: str = Field(min_length=1)
    # The band is never narrower than this on either side: a flat history (an error ratio of
    # exactly 0) would otherwise turn the first 0.1 % into "far outside".
    min_half_width: float = Field(default=0.0, ge=0.0)

    @field_validator("service")
    @classmethod
    def _known_service(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]*", value):
            raise ValueError("service must be a lower-case component name such as gateway or iis")
        return value


def _target(name: str, service: str, expr: str, min_half_width: float) -> Target:
    return Target(name=name, service=service, expr=expr, min_half_width=min_half_width)


DEFAULT_TARGETS: tuple[Target, ...] = (
    _target("gateway_request_rate", c.GATEWAY, f'service:http_server_requests:rate5m{{service="{c.GATEWAY}"}}', 0.5),
    _target("gateway_error_ratio", c.GATEWAY, f'service:http_server_errors:ratio_rate5m{{service="{c.GATEWAY}"}}',
            0.01),
    _target("gateway_latency_p95", c.GATEWAY,
            f'service:http_server_request_duration_seconds:p95_rate5m{{service="{c.GATEWAY}"}}', 0.05),
    _target("transfer_latency_p95", c.TRANSACTIONS, 'type:transaction_duration_seconds:p95_rate5m{type="transfer"}',
            0.05),
    _target("payment_error_ratio", c.PAYMENTS, f'service:http_server_errors:ratio_rate5m{{service="{c.PAYMENTS}"}}',
            0.01),
    # Throughput per type (the performance score's throughput part reads their bands) and the
    # score itself: a score that leaves its usual level is news like any golden signal.
    _target("transfer_request_rate", c.TRANSACTIONS, 'type:transaction_requests:rate5m{type="transfer"}', 0.1),
    _target("payment_request_rate", c.PAYMENTS, 'type:transaction_requests:rate5m{type="payment"}', 0.1),
    _target("transfer_performance_score", c.TRANSACTIONS, 'max(transaction_performance_score{type="transfer"})', 10.0),
    _target("payment_performance_score", c.PAYMENTS, 'max(transaction_performance_score{type="payment"})', 10.0),
    _target("iis_request_rate", "iis", "sum(site:windows_iis_requests:rate5m)", 5.0),
    _target("iis_latency_p95", "iis", "max(site:windows_iis_request_execution_time:p95_rate5m)", 0.02),
    _target("iis_exception_rate", "iis", "sum(app:windows_netframework_exceptions:rate5m)", 0.5),
)


def load_targets(path: str | None = None) -> tuple[Target, ...]:
    path = path or settings.BASELINE_TARGETS.get()
    if not path:
        return DEFAULT_TARGETS
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise settings.ConfigError(f"OBSLAB_BASELINE_TARGETS={path}: cannot read: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise settings.ConfigError(f"{path}: expected a non-empty list of {{name, service, expr}}")
    try:
        targets = tuple(Target(**item) for item in raw)
    except (TypeError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": (), "msg": str(exc)}
        raise settings.ConfigError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise settings.ConfigError(f"{path}: target names must be unique")
    return targets


@dataclass(frozen=True)
class Fit:
    at: float
    duration_s: float
    baselines: dict[str, Baseline]
    usable: np.ndarray          # per target: enough history
    points: np.ndarray          # per target: non-NaN points used
    non_negative: np.ndarray    # per target: never below 0 (rates, ratios, latencies): lower band >= 0
    novelty: NoveltyReference   # per target: the levels visited before the last baseline_adopt_s


@dataclass(frozen=True)
class SeriesScore:
    observed: float
    bands: dict[str, tuple[float, float, float, float]]   # algorithm -> expected, lower, upper, score


class Baseliner:
    def __init__(self, ctx: ServiceContext, prometheus: PrometheusClient, profile: Profile,
                 targets: tuple[Target, ...], algorithms: list[BaselineAlgorithm] | None = None) -> None:
        self.ctx = ctx
        self.prometheus = prometheus
        self.profile = profile
        self.targets = targets
        self.algorithms = list(algorithms or ALGORITHMS)
        # The ensemble is the median of the members' bands: combined from their forecasts, not refitted.
        self.ensemble = ensemble()
        self.novelty = LevelNovelty()
        self.freshness = Freshness(c.BASELINER, ctx.metrics)
        self._lock = threading.Lock()
        self._fit: Fit | None = None
        self._scores: dict[str, SeriesScore] = {}
        self.problems: dict[str, str] = {}
        self.broken: set[str] = set()     # expressions that return several series: never scored

    def refit(self, now: float | None = None) -> Fit:
        end = now or time.time()
        step = float(self.profile.ml_evaluation_s)
        rows = []
        for target in self.targets:
            result = self.prometheus.range(target.expr, end - self.profile.baseline_history_s, end, step)
            if len(result.values) > 1:
                self.broken.add(target.name)
                self.problems[target.name] = f"expression returns {len(result.values)} series; wrap it in sum() or max()"
                rows.append(np.full(len(result.timestamps), np.nan))
            else:
                rows.append(result.values[0] if len(result.values) else np.full(len(result.timestamps), np.nan))
            timestamps = result.timestamps
        values = np.vstack(rows)
        points = (~np.isnan(values)).sum(axis=1)
        started = time.perf_counter()
        baselines = {algorithm.name: algorithm.fit(values, timestamps) for algorithm in self.algorithms}
        with np.errstate(invalid="ignore"):
            non_negative = ~(values < 0).any(axis=1)
        # What the series did until baseline_adopt_s ago: a level it has held only since then is
        # still news, one it has held for longer is its new normal.
        settled = timestamps <= end - self.profile.baseline_adopt_s
        novelty = self.novelty.reference(values[:, settled])
        fit = Fit(end, time.perf_counter() - started, baselines, points >= MIN_HISTORY_POINTS, points, non_negative,
                  novelty)
        with self._lock:
            self._fit = fit
        metrics = self.ctx.metrics
        metrics.gauge(c.BASELINE_FIT_DURATION).set(fit.duration_s)
        metrics.gauge(c.BASELINE_LAST_FIT).set(fit.at)
        for target, count in zip(self.targets, points):
            metrics.gauge(c.BASELINE_HISTORY_POINTS).labels(series=target.name, service=target.service).set(int(count))
        return fit

    def score(self, now: float | None = None) -> dict[str, SeriesScore]:
        started = time.perf_counter()
        at = now or time.time()
        try:
            if self._fit is None or at - self._fit.at >= self.profile.baseline_refit_s:
                self.refit(at)
            observed = np.array([np.nan if t.name in self.broken else self.prometheus.scalar(t.expr, at)
                                 for t in self.targets])
        except PrometheusUnavailable as exc:
            with self._lock:
                self._scores = {}
            self.freshness.stale(str(exc))
            return {}
        fit = self._fit
        assert fit is not None
        column = observed[:, None]
        bands = {name: baseline.bands(np.array([at])) for name, baseline in fit.baselines.items()}
        bands[ENSEMBLE] = median_band(list(bands.values()), self.ensemble.min_members)
        news = fit.novelty.score(observed)
        scores: dict[str, SeriesScore] = {}
        for index, target in enumerate(self.targets):
            if target.name in self.broken:
                continue
            if not fit.usable[index]:
                self.problems[target.name] = (f"warming up: {int(fit.points[index])} of {MIN_HISTORY_POINTS} "
                                              "points of history")
                continue
            if np.isnan(observed[index]):
                self.problems[target.name] = "no current value (the expression returned nothing)"
                continue
            self.problems.pop(target.name, None)
            per_algorithm = {}
            for name, (expected, lower, upper) in bands.items():
                e, lo, up = float(expected[index, 0]), float(lower[index, 0]), float(upper[index, 0])
                lo, up = min(lo, e - target.min_half_width), max(up, e + target.min_half_width)
                if fit.non_negative[index]:
                    lo = max(lo, 0.0)
                s = float(deviation_score(column[index], np.array([e]), np.array([lo]), np.array([up]))[0])
                if np.isfinite(e):
                    per_algorithm[name] = (e, lo, up, s)
            reference = fit.novelty.series[index]
            if reference is not None:
                low, high, _ = reference
                per_algorithm[LEVEL_NOVELTY] = ((low + high) / 2, low, high, float(news[index]))
                if ENSEMBLE in per_algorithm:
                    # The anomaly score that pages (MetricOutsideBaseline) is levelNovelty's, confirmed
                    # by the ensemble's band: outside it *and* at a level not visited before. Until a
                    # series has a settled reference (its first baseline_adopt_s), the band alone
                    # decides, as it did before levelNovelty.
                    e, lo, up, s = per_algorithm[ENSEMBLE]
                    per_algorithm[ENSEMBLE] = (e, lo, up, min(s, float(news[index])))
            scores[target.name] = SeriesScore(float(observed[index]), per_algorithm)
        with self._lock:
            self._scores = scores
        self.freshness.fresh(time.perf_counter() - started)
        return scores

    def snapshot(self) -> dict[str, SeriesScore]:
        with self._lock:
            return dict(self._scores)

    def status(self) -> dict:
        fit = self._fit
        scores = self.snapshot()
        return {
            "detector": c.BASELINER, "profile": self.profile.name, **self.freshness.describe(),
            "algorithms": [{"name": a.name, "summary": a.summary}
                           for a in (*self.algorithms, self.ensemble, self.novelty)],
            "last_fit": None if fit is None else {"at": fit.at, "duration_seconds": round(fit.duration_s, 4)},
            "series": {
                t.name: {"service": t.service, "expr": t.expr, "problem": self.problems.get(t.name),
                         **({"observed": s.observed, "bands": {
                             a: dict(zip(("expected", "lower", "upper", "score"), map(lambda v: round(v, 6), b)))
                             for a, b in s.bands.items()}} if (s := scores.get(t.name)) else {})}
                for t in self.targets
            },
        }


class BaselineCollector:
    """Per-series gauges, present only for series scored in the last fresh evaluation."""

    def __init__(self, baseliner: Baseliner) -> None:
        self.baseliner = baseliner

    def describe(self):
        return []

    def collect(self):
        labels = [c.L_SERIES, c.L_SERVICE]
        observed = GaugeMetricFamily(c.BASELINE_OBSERVED.name, c.BASELINE_OBSERVED.help, labels=labels)
        families = {spec.name: GaugeMetricFamily(spec.name, spec.help, labels=[*labels, c.L_ALGORITHM])
                    for spec in (c.BASELINE_EXPECTED, c.BASELINE_LOWER, c.BASELINE_UPPER, c.BASELINE_SCORE)}
        threshold = GaugeMetricFamily(c.BASELINE_THRESHOLD.name, c.BASELINE_THRESHOLD.help, labels=[*labels, c.L_BOUND])
        services = {t.name: t.service for t in self.baseliner.targets}
        for name, score in self.baseliner.snapshot().items():
            key = [name, services[name]]
            observed.add_metric(key, score.observed)
            for algorithm, (expected, lower, upper, value) in score.bands.items():
                for spec, number in ((c.BASELINE_EXPECTED, expected), (c.BASELINE_LOWER, lower),
                                     (c.BASELINE_UPPER, upper), (c.BASELINE_SCORE, value)):
                    families[spec.name].add_metric([*key, algorithm], number)
                if algorithm == ENSEMBLE:
                    threshold.add_metric([*key, "upper"], upper)
                    threshold.add_metric([*key, "lower"], lower)
        yield observed
        yield from families.values()
        yield threshold


def create_app(prometheus: PrometheusClient | None = None, profile: Profile | None = None,
               targets: tuple[Target, ...] | None = None, start: bool = True) -> Flask:
    return create_ml_app(
        c.BASELINER,
        lambda ctx: Baseliner(ctx, prometheus or prometheus_client(), profile or profiles.active(),
                              targets or load_targets()),
        collector=BaselineCollector, step=lambda b: b.score, interval_s=lambda b: b.profile.ml_evaluation_s,
        metric_specs=[c.BASELINE_FIT_DURATION, c.BASELINE_LAST_FIT, c.BASELINE_HISTORY_POINTS], start=start)
