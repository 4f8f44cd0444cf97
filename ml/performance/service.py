"""The performance-aggregator service (port 8093): what the business and its SLOs look like now.

Every ``ml_evaluation_s`` (at least 5 s) it reads Prometheus (the lab's recording rules where they exist, raw
series where they do not) and publishes, on its own /metrics:

* ``transaction_performance_score{type, service}`` (0-100) and every part and input behind it
  (``transaction_performance_part``, ``transaction_performance_input``): the formula is in
  :mod:`obslab.ml.performance.score`; the throughput part compares with the baseliner's band,
  and the baseliner in turn bands the score (``transfer_performance_score`` ...), so a score
  that leaves its usual level raises ``MetricOutsideBaseline`` like any golden signal;
* business KPIs: movements and their value per minute, value bands, payment success by merchant
  category, fraud decisions, active customers, the load generator's journey funnel;
* capacity and cost per component: requests per CPU-second, CPU use of its one core and the
  headroom left, and a monthly cost from the cost model (:mod:`obslab.ml.performance.cost`).

Every ``baseline_refit_s`` (heavier range reads) it also publishes SLO compliance and the error
budget left over 7 and 30 days and over the spec's rolling period (``window="period"``, from the
budget rule Prometheus records), for every SLO Prometheus records (``slo:error_budget:ratio``
names them: no copy of the spec here), and the SLA view: :data:`SLAS`, the contractual figures
over the calendar month to date. Prometheus evaluates no rule over backfilled blocks, so over
``obslab history``'s days these figures cover only the time the lab has run (``obslab slo report``
falls back to the raw SLI there).

Windows follow the lab's profile (the fast profile divides them as it divides the rules'), except
the SLA's: a contract's calendar month is the same in every profile. No
Prometheus: every gauge is withdrawn and ``ml_input_stale{detector="performance-aggregator"}``
is 1, as for the detectors (MLDetectorStale).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from flask import Flask, jsonify
from prometheus_client.core import GaugeMetricFamily

from obslab import conventions as c
from obslab import profiles, topology
from obslab.conventions.metrics import MetricSpec
from obslab.ml.performance import cost, score
from obslab.ml.performance.score import OBJECTIVES, Objective
from obslab.ml.prometheus import PrometheusClient, PrometheusUnavailable
from obslab.ml.runtime import Freshness, create_ml_app, prometheus_client
from obslab.platform.app import ServiceContext
from obslab.profiles import Profile

log = logging.getLogger(__name__)

# The baseliner's series (obslab.ml.baseliner.DEFAULT_TARGETS) of each type's throughput.
THROUGHPUT_SERIES = "{type}_request_rate"
SLO_WINDOWS = ("7d", "30d")
MIN_INTERVAL_S = 5
PERIOD_WINDOW = "period"


@dataclass(frozen=True)
class Sla:
    """A contractual availability promise over the calendar month (what a customer could claim
    service credits for), measured where customers meet the bank: every gateway answer."""

    name: str
    title: str
    objective: float
    service: str


SLAS: tuple[Sla, ...] = (Sla("public-api-availability", "Public API availability (monthly)", 0.999, c.GATEWAY),)

# Completed-movement value bands (major units; upper edges are transaction_value buckets).
VALUE_BANDS: tuple[tuple[str, float], ...] = (
    ("under_10", 10.0), ("10_to_100", 100.0), ("100_to_1000", 1000.0), ("over_1000", math.inf))
# loadgen_journeys_total outcomes -> funnel endings (their meaning: services/loadgen/recorder.py).
# Dropped journeys never started: not in the funnel.
ENDING_OF: dict[str, str] = {outcome: ending for ending, outcomes in c.JOURNEY_ENDINGS.items() for outcome in outcomes}


def _kpi_queries() -> tuple[tuple[MetricSpec, str, tuple[str, ...]], ...]:
    """(gauge, PromQL with production ranges, labels the result carries) of the plain KPIs."""
    completed = f'status="{c.TransactionStatus.COMPLETED.value}"'
    by_category = "sum by (merchant_category) (rate(payments_by_category_total{%s}[15m]))"
    return (
        (c.BUSINESS_TRANSACTIONS, f"sum by (type) (rate(transaction_requests_total{{{completed}}}[5m])) * 60",
         ("type",)),
        (c.BUSINESS_VALUE, "sum by (type, currency) (rate(transaction_value_sum[5m])) * 60", ("type", "currency")),
        (c.BUSINESS_PAYMENT_SUCCESS,
         f"({by_category % completed} or 0 * {by_category % ''}) / {by_category % ''}", ("merchant_category",)),
        (c.BUSINESS_FRAUD_DECISIONS, "sum by (decision) (rate(fraud_assessments_total[5m])) * 60", ("decision",)),
        (c.BUSINESS_ACTIVE_CUSTOMERS, "max by (window) (gateway_active_customers)", ("window",)),
    )


Sample = tuple[tuple[str, ...], float]


@dataclass
class View:
    """One evaluation's figures: gauge name -> [(label values in the spec's order, value)]."""

    at: float
    gauges: dict[str, list[Sample]] = field(default_factory=dict)
    scores: dict[str, dict] = field(default_factory=dict)      # type -> explanation (status page)

    def add(self, spec: MetricSpec, labels: tuple[str, ...], value: float | None) -> None:
        if value is not None and math.isfinite(value):
            self.gauges.setdefault(spec.name, []).append((labels, float(value)))

    def values(self, spec: MetricSpec) -> dict[tuple[str, ...], float]:
        return dict(self.gauges.get(spec.name, []))


class Aggregator:
    def __init__(self, ctx: ServiceContext | None, prometheus: PrometheusClient, profile: Profile,
                 cost_model: cost.CostModel) -> None:
        self.prometheus = prometheus
        self.profile = profile
        self.cost_model = cost_model
        self.freshness = Freshness(c.PERFORMANCE_AGGREGATOR, ctx.metrics) if ctx is not None else None
        self._lock = threading.Lock()
        self._view: View | None = None
        self._slow: View | None = None       # SLO/SLA figures, refreshed every baseline_refit_s

    # --- reading Prometheus ------------------------------------------------------------------

    def _by(self, expr: str, at: float, *labels: str, scaled: bool = False) -> dict[tuple[str, ...], float]:
        """``expr`` keyed by ``labels``; its ranges are scaled by the profile unless ``scaled`` says
        they already are (an SLO window from Profile.slo_window)."""
        query = expr if scaled else self.profile.scale_ranges(expr)
        return {tuple(metric.get(name, "") for name in labels): value
                for metric, value in self.prometheus.instant(query, at)}

    # --- one evaluation ----------------------------------------------------------------------

    def step(self, now: float | None = None) -> View | None:
        started = time.perf_counter()
        at = now or time.time()
        try:
            view = View(at)
            self._scores(view, at)
            self._kpis(view, at)
            self._capacity(view, at)
            slow = self._slow
            # Until Prometheus records an SLO (a fresh lab's first rule evaluations), ask every cycle.
            if slow is None or not slow.gauges.get(c.SLO_COMPLIANCE.name) or \
                    at - slow.at >= self.profile.baseline_refit_s or at < slow.at:
                slow = View(at)
                self._slos(slow, at)
                self._slas(slow, at)
        except Exception as exc:  # noqa: BLE001 - never keep publishing figures a failed cycle did not confirm
            if not isinstance(exc, PrometheusUnavailable):
                log.exception("performance aggregation failed")
            with self._lock:
                self._view = self._slow = None
            if self.freshness:
                self.freshness.stale(f"{type(exc).__name__}: {exc}" if not isinstance(exc, PrometheusUnavailable)
                                     else str(exc))
            return None
        with self._lock:
            self._view, self._slow = view, slow
        if self.freshness:
            self.freshness.fresh(time.perf_counter() - started)
        return view

    def _scores(self, view: View, at: float) -> None:
        gateway = f'service="{c.GATEWAY}",method="POST"'
        errors = self._by(f"service_route:http_server_errors:ratio_rate5m{{{gateway}}}", at, "route")
        p95 = self._by(f"service_route:http_server_request_duration_seconds:p95_rate5m{{{gateway}}}", at, "route")
        technical = self._by("type:transaction_technical_failures:ratio_rate5m", at, "type")
        throughput = self._by("type:transaction_requests:rate5m", at, "type")
        ensemble = 'algorithm="ensemble"'
        lower = self._by(f"max by (series) (baseline_lower_bound{{{ensemble}}})", at, "series")
        expected = self._by(f"max by (series) (baseline_expected_value{{{ensemble}}})", at, "series")
        for objective in OBJECTIVES:
            series = (THROUGHPUT_SERIES.format(type=objective.type),)
            self._score(view, objective, {
                "gateway_error_ratio": errors.get((objective.route,)),
                "technical_failure_ratio": technical.get((objective.type,)),
                "latency_p95_seconds": p95.get((objective.route,)),
                "throughput_per_second": throughput.get((objective.type,)),
                "throughput_baseline_lower_per_second": lower.get(series),
                "throughput_baseline_expected_per_second": expected.get(series),
            })

    @staticmethod
    def _score(view: View, objective: Objective, inputs: dict[str, float | None]) -> None:
        failures = [v for v in (inputs["gateway_error_ratio"], inputs["technical_failure_ratio"])
                    if v is not None and math.isfinite(v)]
        success = 1.0 - max(failures) if failures else None
        inputs = {**inputs, "success_ratio": success, "success_objective_ratio": objective.success_ratio,
                  "latency_objective_seconds": objective.latency_p95_s}
        parts = {
            c.PART_SUCCESS: score.success_part(success, objective.success_ratio),
            c.PART_LATENCY: score.latency_part(inputs["latency_p95_seconds"], objective.latency_p95_s),
            c.PART_THROUGHPUT: score.throughput_part(inputs["throughput_per_second"],
                                                     inputs["throughput_baseline_lower_per_second"]),
        }
        value = score.score(parts)
        key = (objective.type, objective.service)
        view.add(c.TRANSACTION_PERFORMANCE_SCORE, key, value)
        for name, part in parts.items():
            view.add(c.PERFORMANCE_PART, (*key, name), part)
        for name, number in inputs.items():
            view.add(c.PERFORMANCE_INPUT, (*key, name), number)
        # What pulls the score down, if anything does.
        measured = {n: p for n, p in parts.items() if p is not None and p < 1.0}
        view.scores[objective.type] = {
            "service": objective.service,
            "score": None if value is None else round(value, 2),
            "parts": {n: None if p is None else round(p, 4) for n, p in parts.items()},
            "weakest": min(measured, key=measured.__getitem__) if measured else None,
            "inputs": {n: v for n, v in inputs.items() if v is not None and math.isfinite(v)},
        }

    def _kpis(self, view: View, at: float) -> None:
        for spec, expr, labels in _kpi_queries():
            for key, value in self._by(expr, at, *labels).items():
                view.add(spec, key, value)
        # Shares over 15 minutes (a band of a few movements a minute needs that much to read steadily),
        # in each movement's own currency's major units: the bands are coarse enough for that.
        buckets = self._by("sum by (type, le) (rate(transaction_value_bucket[15m]))", at, "type", "le")
        for type_ in {t for t, _ in buckets}:
            cumulative = sorted((float(le), count) for (t, le), count in buckets.items() if t == type_)
            total = cumulative[-1][1] if cumulative else 0.0
            if total <= 0:
                continue
            below = 0.0
            for band, upper in VALUE_BANDS:
                upto = max((n for le, n in cumulative if le <= upper), default=0.0)
                view.add(c.BUSINESS_VALUE_SHARE, (type_, band), (upto - below) / total)
                below = upto
        self._funnel(view, at)

    def _funnel(self, view: View, at: float) -> None:
        started = self._by("sum by (journey) (rate(loadgen_journeys_started_total[15m])) * 60", at, "journey")
        steps = self._by("sum by (journey, step) (rate(loadgen_journey_steps_reached_total[15m])) * 60", at,
                         "journey", "step")
        endings = self._by("sum by (journey, outcome) (rate(loadgen_journeys_total[15m])) * 60", at,
                           "journey", "outcome")
        for (journey,), rate in started.items():
            view.add(c.BUSINESS_FUNNEL, (journey, "started"), rate)
        for (journey, step), rate in steps.items():
            view.add(c.BUSINESS_FUNNEL, (journey, f"reached_{step}"), rate)
        ended: dict[tuple[str, str], float] = {}
        for (journey, outcome), rate in endings.items():
            if outcome in ENDING_OF:
                key = (journey, ENDING_OF[outcome])
                ended[key] = ended.get(key, 0.0) + rate
        for key, rate in ended.items():
            view.add(c.BUSINESS_FUNNEL, key, rate)
        for (journey,), rate in started.items():
            if rate > 0:
                view.add(c.BUSINESS_CONVERSION, (journey,), ended.get((journey, "completed"), 0.0) / rate)

    def _capacity(self, view: View, at: float) -> None:
        cpu = self._by("sum by (job) (rate(process_cpu_seconds_total[5m]))", at, "job")
        requests = self._by("sum by (service) (rate(http_server_requests_total[5m]))", at, "service")
        memory = self._by("sum by (job) (process_resident_memory_bytes)", at, "job")
        series = self._by("sum by (job) (scrape_samples_post_metric_relabeling)", at, "job")
        # Our single-process components outside the ML tier (whose numerical libraries run threads).
        one_core = {comp.name for comp in topology.ALL if comp.entry and comp.tier != "ml"}
        currency = self.cost_model.currency
        for (job,) in sorted({*cpu, *memory, *series}):
            cores = cpu.get((job,))
            served = requests.get((job,))
            if cores is not None and served is not None and cores > 0:
                view.add(c.CAPACITY_REQUESTS_PER_CPU, (job,), served / cores)
                if job in one_core:
                    # One Python process, one interpreter lock: a core is all it can use.
                    view.add(c.CAPACITY_SPARE_RPS, (job,), max(0.0, 1.0 - cores) * served / cores)
            if cores is not None and job in one_core:
                view.add(c.CAPACITY_CPU, (job,), cores)
                view.add(c.CAPACITY_HEADROOM, (job,), max(0.0, 1.0 - cores))
            monthly = self.cost_model.monthly(cores or 0.0, memory.get((job,), 0.0), series.get((job,), 0.0))
            for resource, amount in monthly.items():
                view.add(c.COST_MONTHLY, (job, resource, currency), amount)

    def _slos(self, view: View, at: float) -> None:
        keys = ("slo", "service", "team")
        budgets = self._by(f"max by (slo, service, team) ({c.RULE_SLO_ERROR_BUDGET})", at, *keys)
        for window in SLO_WINDOWS:
            expr = (f"avg by (slo, service, team) (avg_over_time({c.RULE_SLO_ERROR_RATIO.format(window='5m')}"
                    f"[{self.profile.slo_window(window)}]))")
            for key, ratio in self._by(expr, at, *keys, scaled=True).items():
                view.add(c.SLO_COMPLIANCE, (*key, window), 1.0 - ratio)
                if budgets.get(key):
                    view.add(c.SLO_BUDGET_REMAINING, (*key, window), 1.0 - ratio / budgets[key])
        # The spec's rolling period: the budget rule Prometheus records already averages over it.
        remaining = self._by(f"max by (slo, service, team) ({c.RULE_SLO_BUDGET_REMAINING})", at, *keys)
        for key, left in remaining.items():
            view.add(c.SLO_BUDGET_REMAINING, (*key, PERIOD_WINDOW), left)
            if budgets.get(key):
                view.add(c.SLO_COMPLIANCE, (*key, PERIOD_WINDOW), 1.0 - (1.0 - left) * budgets[key])

    def _slas(self, view: View, at: float) -> None:
        month = datetime.fromtimestamp(at, timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        seconds = max(60, int(at - month.timestamp()))
        for sla in SLAS:
            selector = f'{{service="{sla.service}"}}'
            expr = (f"sum(sum_over_time(service:http_server_errors:rate5m{selector}[{seconds}s])) / "
                    f"sum(sum_over_time(service:http_server_requests:rate5m{selector}[{seconds}s]))")
            values = self.prometheus.instant(expr, at)
            view.add(c.SLA_OBJECTIVE, (sla.name,), sla.objective)
            if values and math.isfinite(values[0][1]):
                error_ratio = values[0][1]
                view.add(c.SLA_AVAILABILITY, (sla.name,), 1.0 - error_ratio)
                view.add(c.SLA_BUDGET_REMAINING, (sla.name,), 1.0 - error_ratio / (1.0 - sla.objective))

    # --- what it publishes -------------------------------------------------------------------

    def views(self) -> tuple[View | None, View | None]:
        with self._lock:
            return self._view, self._slow

    def status(self) -> dict:
        view, slow = self.views()
        stale = self.freshness.describe() if self.freshness else {}
        return {
            "detector": c.PERFORMANCE_AGGREGATOR, "profile": self.profile.name, **stale,
            "formula": {"weights": score.WEIGHTS, "success_zero_at_budget_multiple": score.SUCCESS_ZERO_AT,
                        "floor": score.SCORE_FLOOR},
            "scores": view.scores if view else {},
            "slos": _table(slow, c.SLO_COMPLIANCE, c.SLO_BUDGET_REMAINING, ("compliance", "budget_remaining")),
            "slas": [{"name": sla.name, "title": sla.title, "objective": sla.objective,
                      "availability": slow.values(c.SLA_AVAILABILITY).get((sla.name,)) if slow else None,
                      "budget_remaining": slow.values(c.SLA_BUDGET_REMAINING).get((sla.name,)) if slow else None}
                     for sla in SLAS],
            "capacity": _by_component(view),
            "cost_currency": self.cost_model.currency,
        }

    def kpis(self) -> dict:
        view, _ = self.views()
        if view is None:
            return {"at": None}
        return {"at": view.at, **{spec.name: [{**dict(zip(spec.labels, key)), "value": round(value, 6)}
                                              for key, value in view.gauges.get(spec.name, [])]
                                  for spec in (c.BUSINESS_TRANSACTIONS, c.BUSINESS_VALUE, c.BUSINESS_VALUE_SHARE,
                                               c.BUSINESS_PAYMENT_SUCCESS, c.BUSINESS_FRAUD_DECISIONS,
                                               c.BUSINESS_ACTIVE_CUSTOMERS, c.BUSINESS_FUNNEL,
                                               c.BUSINESS_CONVERSION)}}


def _table(view: View | None, first: MetricSpec, second: MetricSpec, names: tuple[str, str]) -> list[dict]:
    if view is None:
        return []
    a, b = view.values(first), view.values(second)
    return [{**dict(zip(first.labels, key)), names[0]: round(value, 6),
             names[1]: None if key not in b else round(b[key], 6)} for key, value in sorted(a.items())]


def _by_component(view: View | None) -> dict[str, dict]:
    if view is None:
        return {}
    found: dict[str, dict] = {}
    for spec, name in ((c.CAPACITY_REQUESTS_PER_CPU, "requests_per_cpu_second"),
                       (c.CAPACITY_CPU, "cpu_utilisation"), (c.CAPACITY_HEADROOM, "headroom"),
                       (c.CAPACITY_SPARE_RPS, "spare_requests_per_second")):
        for (component,), value in view.values(spec).items():
            found.setdefault(component, {})[name] = round(value, 4)
    for (component, resource, _), value in view.values(c.COST_MONTHLY).items():
        found.setdefault(component, {}).setdefault("monthly_cost", {})[resource] = round(value, 2)
    return found


class PerformanceCollector:
    """Every gauge of the last fresh evaluations; nothing while stale."""

    SPECS: tuple[MetricSpec, ...] = (c.TRANSACTION_PERFORMANCE_SCORE, *c.PERFORMANCE_METRICS)

    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator

    def describe(self):
        return []

    def collect(self):
        view, slow = self.aggregator.views()
        for spec in self.SPECS:
            family = GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))
            for source in (view, slow):
                for labels, value in (source.gauges.get(spec.name, []) if source else []):
                    family.add_metric(list(labels), value)
            yield family


def evaluation_interval(profile: Profile) -> float:
    """The detectors' cadence, but never below 5 s: a score of 5-minute windows gains nothing from
    more, and on a fast lab's two cores every query competes with the services."""
    return float(max(profile.ml_evaluation_s, MIN_INTERVAL_S))


def create_app(prometheus: PrometheusClient | None = None, profile: Profile | None = None,
               cost_model: cost.CostModel | None = None, start: bool = True) -> Flask:
    def make(ctx: ServiceContext) -> Aggregator:
        return Aggregator(ctx, prometheus or prometheus_client(), profile or profiles.active(),
                          cost_model or cost.load())

    def kpi_routes(app: Flask, aggregator: Aggregator) -> None:
        @app.get(f"{c.API_PREFIX}/kpis")
        def kpis():
            return jsonify(aggregator.kpis())

    return create_ml_app(c.PERFORMANCE_AGGREGATOR, make, collector=PerformanceCollector,
                         step=lambda a: a.step, interval_s=lambda a: evaluation_interval(a.profile),
                         metric_specs=[], start=start, extra_routes=kpi_routes)
