"""The seed metric schemas (transactions, DDoS) are a contract: names, types and labels must not drift."""

import pytest

from obslab import conventions as c
from obslab import topology
from obslab.conventions import MetricSpec
from obslab.telemetry import MetricSet


@pytest.mark.parametrize("spec, kind, labels", [
    (c.TRANSACTION_REQUESTS, "counter", ("type", "status")),
    (c.TRANSACTION_DURATION, "histogram", ("type",)),
    (c.TRANSACTION_FAILURES, "counter", ("type", "error_code")),
    (c.SLOW_TRANSACTIONS, "counter", ("threshold", "type")),
    (c.TRANSACTION_PERFORMANCE_SCORE, "gauge", ("type", "service")),
    (c.DDOS_DETECTION_SCORE, "gauge", ()),
    (c.DDOS_CONFIDENCE, "gauge", ()),
    (c.DDOS_BINARY_PREDICTION, "gauge", ()),
    (c.DDOS_MODEL_PREDICTIONS, "counter", ("prediction",)),
])
def test_seed_transaction_metrics_keep_their_names_and_labels(spec, kind, labels):
    seed_names = {
        c.TRANSACTION_REQUESTS: "transaction_requests_total",
        c.TRANSACTION_DURATION: "transaction_duration_seconds",
        c.TRANSACTION_FAILURES: "transaction_failures_total",
        c.SLOW_TRANSACTIONS: "slow_transactions_total",
        c.TRANSACTION_PERFORMANCE_SCORE: "transaction_performance_score",
        c.DDOS_DETECTION_SCORE: "ddos_detection_score",
        c.DDOS_CONFIDENCE: "ddos_confidence",
        c.DDOS_BINARY_PREDICTION: "ddos_binary_prediction",
        c.DDOS_MODEL_PREDICTIONS: "ddos_model_predictions_total",
    }
    assert spec.name == seed_names[spec]
    assert spec.kind == kind
    assert spec.labels == labels


# The business KPIs the performance-aggregator and its Grafana dashboard are written against.
@pytest.mark.parametrize("spec, name, kind, labels", [
    (c.TRANSACTION_VALUE, "transaction_value", "histogram", ("type", "currency")),
    (c.PAYMENTS_BY_CATEGORY, "payments_by_category_total", "counter", ("merchant_category", "status")),
    (c.GATEWAY_ACTIVE_CUSTOMERS, "gateway_active_customers", "gauge", ("window",)),
    (c.LOADGEN_JOURNEYS_STARTED, "loadgen_journeys_started_total", "counter", ("journey",)),
    (c.LOADGEN_STEPS_REACHED, "loadgen_journey_steps_reached_total", "counter", ("journey", "step")),
    (c.LOADGEN_JOURNEYS, "loadgen_journeys_total", "counter", ("journey", "outcome")),
])
def test_business_kpi_metrics_keep_their_names_and_labels(spec, name, kind, labels):
    assert (spec.name, spec.kind, spec.labels) == (name, kind, labels)


def test_business_kpi_label_values_are_the_agreed_few():
    assert c.TRANSACTION_VALUE.buckets == (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
    assert c.ACTIVE_CUSTOMER_WINDOWS == {"5m": 300, "1h": 3600}
    assert {m.value for m in c.MerchantCategory} == {
        "groceries", "utilities", "entertainment", "travel", "retail", "gambling", "other"}
    assert {s.value for s in c.TransactionStatus} == {"completed", "rejected", "declined", "failed"}


def test_every_declared_metric_spec_is_exposed_under_its_exact_name():
    specs = [v for v in vars(c).values() if isinstance(v, MetricSpec)]
    assert len(specs) > 15
    metrics = MetricSet(process_metrics=False)
    metrics.declare(specs)
    exposed = {family.name for family in metrics.registry.collect()}
    for spec in specs:
        family = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
        assert family in exposed, spec.name


@pytest.mark.parametrize("name, kind", [("requests", "counter"), ("depth_total", "gauge")])
def test_metric_specs_refuse_names_that_break_prometheus_conventions(name, kind):
    with pytest.raises(ValueError):
        MetricSpec(name, kind, "help")


def test_ports_are_the_design_ports():
    assert topology.DEFAULT_PORTS == {
        "gateway": 8080, "auth": 8081, "accounts": 8082, "transactions": 8083, "payments": 8084,
        "fraud": 8085, "notifications": 8086, "trace-sink": 4318, "prometheus": 9090,
        "fault-injector": 8094, "iis-mock": 9182, "alert-receiver": 8095, "alertmanager": 9093,
        "ddos-detector": 8091, "baseliner": 8092, "performance-aggregator": 8093,
        # not in the original component table (which gave the generator no port): its own /metrics
        "load-generator": 8096,
    }
