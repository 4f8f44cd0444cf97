"""The performance-aggregator: the score's formula, and every figure it publishes read from a
real Prometheus holding an hour of known series (backfilled with promtool)."""

from __future__ import annotations

import math
import time

import pytest

from obslab import conventions as c
from obslab.lab.backfill import create_blocks
from obslab.ml.performance import cost, score
from obslab.ml.performance.service import Aggregator, PerformanceCollector, create_app
from obslab.ml.prometheus import PrometheusClient
from obslab.profiles import PRODUCTION
from tests.prometheus_support import start_prometheus

pytestmark = pytest.mark.prometheus

STEP = 15
POINTS = 240                     # an hour at 15 s


# --- the formula -----------------------------------------------------------------------------

def test_each_part_is_one_within_its_objective_and_falls_as_documented():
    assert score.success_part(0.9995, 0.999) == 1.0
    assert score.success_part(1 - 0.001 * 20, 0.999) == pytest.approx(0.0)
    assert score.success_part(1 - 0.0105, 0.999) == pytest.approx(1 - 0.0095 / 0.019)
    assert score.latency_part(0.8, 1.0) == 1.0 and score.latency_part(4.0, 1.0) == 0.25
    assert score.throughput_part(5.0, 2.0) == 1.0 and score.throughput_part(1.0, 4.0) == 0.25
    assert score.throughput_part(0.0, 0.0) == 1.0          # a band at zero asks for nothing
    assert score.success_part(math.nan, 0.999) is None and score.latency_part(None, 1.0) is None


def test_the_score_is_the_weighted_geometric_mean_of_the_measured_parts():
    assert score.score({"success": 1.0, "latency": 1.0, "throughput": 1.0}) == pytest.approx(100.0)
    assert score.score({"success": 1.0, "latency": 0.5, "throughput": 1.0}) == pytest.approx(100 * 0.5 ** 0.3)
    # A path that fails every request is not half fine because it fails fast.
    assert score.score({"success": 0.0, "latency": 1.0, "throughput": 1.0}) == 0.0
    # An unmeasurable part is left out, the others' weights rescaled.
    assert score.score({"success": None, "latency": 0.5, "throughput": None}) == pytest.approx(50.0)
    assert score.score({"success": None, "latency": None, "throughput": None}) is None


def test_a_bad_cost_model_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "prices.yml"
    path.write_text("currency: EUR\nhours_per_month: 730\ncpu_core_hour: -1\nmemory_gib_hour: 0\n"
                    "series_per_thousand_month: 1\n")
    with pytest.raises(Exception, match=f"{path}: cpu_core_hour"):
        cost.load(path)
    model = cost.load()          # the shipped one
    assert model.currency == "EUR"
    assert model.monthly(1.0, 1024 ** 3, 1000) == {
        "cpu": pytest.approx(model.cpu_core_hour * 730), "memory": pytest.approx(model.memory_gib_hour * 730),
        "series": pytest.approx(model.series_per_thousand_month)}


# --- against a real Prometheus ---------------------------------------------------------------

def _series(end: float) -> str:
    """An hour of OpenMetrics: gauges (recorded series) constant, counters at constant rates."""
    ts = [end - STEP * (POINTS - 1 - i) for i in range(POINTS)]
    gauges = {
        'service_route:http_server_errors:ratio_rate5m{service="gateway",method="POST",route="/api/v1/transfers"}':
            0.005,
        'service_route:http_server_request_duration_seconds:p95_rate5m'
        '{service="gateway",method="POST",route="/api/v1/transfers"}': 2.0,
        'type:transaction_technical_failures:ratio_rate5m{type="transfer"}': 0.001,
        'type:transaction_requests:rate5m{type="transfer"}': 2.0,
        'baseline_lower_bound{series="transfer_request_rate",service="transactions",algorithm="ensemble"}': 1.0,
        'baseline_lower_bound{series="payment_request_rate",service="payments",algorithm="ensemble"}': 1.0,
        'baseline_expected_value{series="transfer_request_rate",service="transactions",algorithm="ensemble"}': 2.5,
        'slo:sli_error:ratio_rate5m{slo="transfer-availability",service="transactions",team="core-banking"}':
            0.0005,
        'slo:error_budget:ratio{slo="transfer-availability",service="transactions",team="core-banking"}': 0.001,
        'slo:error_budget_remaining:ratio{slo="transfer-availability",service="transactions",team="core-banking"}':
            0.25,
        'service:http_server_errors:rate5m{service="gateway"}': 0.02,
        'service:http_server_requests:rate5m{service="gateway"}': 10.0,
        'gateway_active_customers{window="5m",job="gateway"}': 42,
        'process_resident_memory_bytes{job="gateway"}': 512 * 1024 ** 2,
        'scrape_samples_post_metric_relabeling{job="gateway"}': 2000,
    }
    # name{labels} -> increase per second
    counters = {
        'transaction_requests_total{type="transfer",status="completed"}': 1.0,
        'transaction_requests_total{type="transfer",status="rejected"}': 0.5,
        'transaction_value_sum{type="transfer",currency="EUR"}': 80.0,
        'transaction_value_count{type="transfer",currency="EUR"}': 1.0,
        'transaction_value_bucket{type="transfer",currency="EUR",le="10.0"}': 0.2,
        'transaction_value_bucket{type="transfer",currency="EUR",le="100.0"}': 0.8,
        'transaction_value_bucket{type="transfer",currency="EUR",le="1000.0"}': 1.0,
        'transaction_value_bucket{type="transfer",currency="EUR",le="+Inf"}': 1.0,
        'payments_by_category_total{merchant_category="groceries",status="completed"}': 0.9,
        'payments_by_category_total{merchant_category="groceries",status="declined"}': 0.1,
        'payments_by_category_total{merchant_category="travel",status="failed"}': 0.2,
        'fraud_assessments_total{kind="transfer",decision="allow"}': 0.5,
        'loadgen_journeys_started_total{journey="pay_bill"}': 1.0,
        'loadgen_journey_steps_reached_total{journey="pay_bill",step="login"}': 1.0,
        'loadgen_journey_steps_reached_total{journey="pay_bill",step="payment"}': 0.8,
        'loadgen_journeys_total{journey="pay_bill",outcome="ok"}': 0.6,
        'loadgen_journeys_total{journey="pay_bill",outcome="rejected"}': 0.1,
        'loadgen_journeys_total{journey="pay_bill",outcome="error"}': 0.1,
        'process_cpu_seconds_total{job="gateway"}': 0.5,
        'http_server_requests_total{service="gateway",method="GET",route="/x",code="200"}': 100.0,
    }
    lines: list[str] = []
    families: dict[str, list[str]] = {}
    for text, value in gauges.items():
        families.setdefault(text.split("{")[0], []).extend(f"{text} {value} {t:.3f}" for t in ts)
    for text, per_second in counters.items():
        name = text.split("{")[0]
        family = name.removesuffix("_total").removesuffix("_sum").removesuffix("_count").removesuffix("_bucket")
        families.setdefault(family, []).extend(f"{text} {per_second * STEP * i} {t:.3f}" for i, t in enumerate(ts))
    for family, samples in families.items():
        kind = "counter" if family.startswith(("transaction_requests", "payments_by", "fraud", "loadgen", "process_cpu",
                                                "http_server")) else "unknown"
        if family == "transaction_value":
            kind = "histogram"
        lines.append(f"# TYPE {family} {kind}")
        # OpenMetrics wants each series' samples together, in time order: they are.
        lines.extend(samples)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("aggregator")
    end = float(int(time.time()) - 60)
    source = workdir / "series.om"
    source.write_text(_series(end))
    done = create_blocks(source, workdir / "tsdb")
    _, stderr = done.communicate(timeout=60)
    assert done.returncode == 0, stderr
    server = start_prometheus(workdir, data_dir=workdir / "tsdb")
    try:
        yield server, end
    finally:
        server.stop()


@pytest.fixture(scope="module")
def view(prometheus):
    server, end = prometheus
    aggregator = Aggregator(None, PrometheusClient(server.url), PRODUCTION, cost.load())
    result = aggregator.step(end)
    assert result is not None
    return aggregator, result


def test_the_transfer_score_and_every_input_behind_it(view):
    aggregator, result = view
    key = ("transfer", "transactions")
    # Independently: failures 0.5 % (worse of 0.5 % at the gateway and 0.1 % inside), 5x the budget;
    # p95 2 s against 1 s; throughput 2/s above its lower edge 1/s.
    success = 1 - (0.005 - 0.001) / (19 * 0.001)
    expected = 100 * success ** 0.5 * 0.5 ** 0.3
    assert result.values(c.TRANSACTION_PERFORMANCE_SCORE)[key] == pytest.approx(expected, rel=1e-6)
    parts = result.values(c.PERFORMANCE_PART)
    assert parts[(*key, "success")] == pytest.approx(success)
    assert parts[(*key, "latency")] == pytest.approx(0.5)
    assert parts[(*key, "throughput")] == 1.0
    inputs = result.values(c.PERFORMANCE_INPUT)
    assert inputs[(*key, "success_ratio")] == pytest.approx(0.995)
    assert inputs[(*key, "latency_objective_seconds")] == 1.0
    assert inputs[(*key, "throughput_baseline_expected_per_second")] == pytest.approx(2.5)
    explained = aggregator.status()["scores"]["transfer"]
    assert explained["weakest"] == "latency" and explained["score"] == pytest.approx(expected, abs=0.01)


def test_a_type_that_meets_every_objective_names_no_weakest_part():
    from obslab.ml.performance.service import View

    view = View(0.0)
    Aggregator._score(view, score.OBJECTIVES[0], {
        "gateway_error_ratio": 0.0, "technical_failure_ratio": 0.0, "latency_p95_seconds": 0.1,
        "throughput_per_second": 3.0, "throughput_baseline_lower_per_second": 1.0,
        "throughput_baseline_expected_per_second": 2.0})
    assert view.scores["transfer"]["score"] == 100.0 and view.scores["transfer"]["weakest"] is None


def test_a_type_without_traffic_has_no_score_rather_than_a_guess(view):
    _, result = view
    assert ("payment", "payments") not in result.values(c.TRANSACTION_PERFORMANCE_SCORE)


def test_slo_compliance_and_budget_over_each_window(view):
    aggregator, _ = view
    _, slow = aggregator.views()
    key = ("transfer-availability", "transactions", "core-banking")
    compliance, remaining = slow.values(c.SLO_COMPLIANCE), slow.values(c.SLO_BUDGET_REMAINING)
    for window in ("7d", "30d"):
        assert compliance[(*key, window)] == pytest.approx(0.9995)
        assert remaining[(*key, window)] == pytest.approx(0.5)
    assert remaining[(*key, "period")] == pytest.approx(0.25)
    assert compliance[(*key, "period")] == pytest.approx(1 - 0.75 * 0.001)


def test_the_sla_reads_the_month_to_date(view):
    aggregator, _ = view
    _, slow = aggregator.views()
    assert slow.values(c.SLA_AVAILABILITY)[("public-api-availability",)] == pytest.approx(0.998)
    assert slow.values(c.SLA_BUDGET_REMAINING)[("public-api-availability",)] == pytest.approx(1 - 0.002 / 0.001)
    assert aggregator.status()["slas"][0]["objective"] == 0.999


def test_business_kpis(view):
    aggregator, result = view
    assert result.values(c.BUSINESS_TRANSACTIONS)[("transfer",)] == pytest.approx(60.0)
    assert result.values(c.BUSINESS_VALUE)[("transfer", "EUR")] == pytest.approx(80.0 * 60)
    bands = result.values(c.BUSINESS_VALUE_SHARE)
    assert [bands[("transfer", b)] for b in ("under_10", "10_to_100", "100_to_1000", "over_1000")] == \
        pytest.approx([0.2, 0.6, 0.2, 0.0])
    success = result.values(c.BUSINESS_PAYMENT_SUCCESS)
    assert success[("groceries",)] == pytest.approx(0.9) and success[("travel",)] == 0.0
    assert result.values(c.BUSINESS_FRAUD_DECISIONS)[("allow",)] == pytest.approx(30.0)
    assert result.values(c.BUSINESS_ACTIVE_CUSTOMERS)[("5m",)] == 42
    funnel = result.values(c.BUSINESS_FUNNEL)
    assert funnel[("pay_bill", "started")] == pytest.approx(60.0)
    assert funnel[("pay_bill", "reached_payment")] == pytest.approx(48.0)
    assert funnel[("pay_bill", "completed")] == pytest.approx(36.0)
    assert funnel[("pay_bill", "abandoned")] == pytest.approx(6.0)
    assert funnel[("pay_bill", "failed")] == pytest.approx(6.0)
    assert result.values(c.BUSINESS_CONVERSION)[("pay_bill",)] == pytest.approx(0.6)
    assert aggregator.kpis()[c.BUSINESS_CONVERSION.name] == [{"journey": "pay_bill", "value": 0.6}]


def test_capacity_and_cost_per_component(view):
    aggregator, result = view
    assert result.values(c.CAPACITY_REQUESTS_PER_CPU)[("gateway",)] == pytest.approx(200.0)
    assert result.values(c.CAPACITY_CPU)[("gateway",)] == pytest.approx(0.5)
    assert result.values(c.CAPACITY_HEADROOM)[("gateway",)] == pytest.approx(0.5)
    assert result.values(c.CAPACITY_SPARE_RPS)[("gateway",)] == pytest.approx(100.0)   # half its core is free
    model = aggregator.cost_model
    monthly = result.values(c.COST_MONTHLY)
    assert monthly[("gateway", "cpu", "EUR")] == pytest.approx(0.5 * model.cpu_core_hour * 730)
    assert monthly[("gateway", "memory", "EUR")] == pytest.approx(0.5 * model.memory_gib_hour * 730)
    assert monthly[("gateway", "series", "EUR")] == pytest.approx(2 * model.series_per_thousand_month)


def test_the_collector_publishes_what_it_measured_and_nothing_while_stale(view, prometheus):
    aggregator, _ = view
    families = {f.name: f for f in PerformanceCollector(aggregator).collect()}
    score_samples = families[c.TRANSACTION_PERFORMANCE_SCORE.name].samples
    assert [s.labels for s in score_samples] == [{"type": "transfer", "service": "transactions"}]

    app = create_app(prometheus=PrometheusClient("http://127.0.0.1:9", timeout=0.5), profile=PRODUCTION,
                     start=False)
    stale = app.extensions[c.PERFORMANCE_AGGREGATOR]
    assert stale.step() is None
    client = app.test_client()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'ml_input_stale{detector="performance-aggregator"} 1.0' in text
    assert "transaction_performance_score{" not in text
    assert client.get("/api/v1/kpis").get_json() == {"at": None}
    assert client.get("/api/v1/status").get_json()["stale"] is True


def test_the_alert_floor_is_the_scores_floor():
    from obslab.rules import load_catalog

    (alert,) = [a for a in load_catalog().alerts() if a.name == "TransactionPerformanceScoreLow"]
    assert alert.expr.rstrip().endswith(f"< {score.SCORE_FLOOR:g}")


class RecordingPrometheus(PrometheusClient):
    """Answers nothing, remembers every query (what is under test is the text sent)."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9")
        self.queries: list[str] = []

    def instant(self, expr, at=None):
        self.queries.append(expr)
        return []


def test_a_fast_lab_scales_rates_once_and_slo_windows_once():
    from obslab.profiles import FAST

    prometheus = RecordingPrometheus()
    Aggregator(None, prometheus, FAST, cost.load()).step(1_000_000.0)
    slo_7d = [q for q in prometheus.queries if "avg_over_time" in q and FAST.slo_window("7d") in q]
    assert slo_7d, prometheus.queries
    assert any("rate(process_cpu_seconds_total[30s])" in q for q in prometheus.queries)


def test_a_cycle_that_fails_for_any_reason_withdraws_everything(view, monkeypatch):
    aggregator, _ = view
    broken = Aggregator(None, aggregator.prometheus, PRODUCTION, cost.load())
    broken.step(aggregator.views()[0].at)
    assert broken.views()[0] is not None
    monkeypatch.setattr(broken, "_funnel", lambda *a: 1 / 0)
    assert broken.step(aggregator.views()[0].at) is None
    assert broken.views() == (None, None)
