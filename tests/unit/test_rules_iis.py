"""IIS rules: the spec's conventions, the rendered files, promtool, and a real Prometheus.

The runbook tests (every alert's page, its PromQL parsed and run) are in test_runbooks.py.
"""

from __future__ import annotations

import math
import time

import pytest
import requests
import yaml
from prometheus_client import start_http_server
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from obslab import conventions as c
from obslab import topology
from obslab import rules, settings
from obslab.rules import RecordingRule
from tests.prometheus_support import scrape_job, start_prometheus
from tests.support import required_binary

ROOT = settings.repo_root()
RULES_DIR = ROOT / "prometheus" / "rules"
IIS_ALERTS = ("IISVolumeSurge", "IISSuccessRateLow", "IISTechnicalExceptionsHigh",
              "IISResponseTimeP95High", "IISAppPoolDown")


def _rendered_alerts() -> list[dict]:
    """Alert rules as Prometheus reads them from the committed files."""
    found = []
    for relative in rules.rule_files():
        for group in yaml.safe_load((ROOT / relative).read_text())["groups"]:
            found += [rule for rule in group["rules"] if "alert" in rule]
    return found


# --- the IIS spec -----------------------------------------------------------------------------

def _iis_file():
    return rules.load_catalog().rule_files()["prometheus/rules/iis.yml"]


def test_the_iis_spec_defines_the_five_alerts_of_the_issue():
    assert [alert.alert for alert in _iis_file().alerts()] == list(IIS_ALERTS)


def test_iis_alerts_use_recorded_series_or_plain_gauges_never_raw_counters():
    for alert in _iis_file().alerts():
        assert "_total" not in alert.expr and "rate(" not in alert.expr, alert.alert


def test_the_handwritten_iis_cases_check_the_runbook_url_of_each_alert_they_fire():
    checked = set()
    for case in yaml.safe_load((RULES_DIR / "tests" / "iis_test.yml").read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            for expected in check.get("exp_alerts") or []:
                assert expected["exp_annotations"][c.A_RUNBOOK_URL] == topology.runbook_url(check["alertname"])
                checked.add(check["alertname"])
    assert checked == set(IIS_ALERTS)


def test_the_rules_readme_lists_every_recorded_iis_series():
    readme = (RULES_DIR / "README.md").read_text()
    for group in _iis_file().groups:
        for rule in group.rules:
            if isinstance(rule, RecordingRule):
                assert f"`{rule.record}`" in readme


# --- a real Prometheus ------------------------------------------------------------------------

def _cdf(seconds: float) -> float:
    """Share of requests executed within ``seconds``: the seeds' Gaussian(50 ms, 20 ms)."""
    return 0.5 * (1 + math.erf((seconds - 0.050) / (0.020 * math.sqrt(2))))


class _NormalIis:
    """The IIS families at the seeds' normal behaviour, counting up with wall time."""

    def __init__(self, requests_per_second: float = 100.0) -> None:
        self.start = time.time()
        self.rps = requests_per_second

    def collect(self):
        elapsed = time.time() - self.start
        requests = CounterMetricFamily(c.IIS_REQUESTS.name, c.IIS_REQUESTS.help, labels=[c.L_METHOD, c.L_SITE])
        server = CounterMetricFamily(c.IIS_SERVER_ERRORS.name, c.IIS_SERVER_ERRORS.help, labels=[c.L_SITE])
        client = CounterMetricFamily(c.IIS_CLIENT_ERRORS.name, c.IIS_CLIENT_ERRORS.help, labels=[c.L_SITE])
        exceptions = CounterMetricFamily(c.NETFRAMEWORK_EXCEPTIONS.name, c.NETFRAMEWORK_EXCEPTIONS.help,
                                         labels=[c.L_APP_NAME, c.L_EXCEPTION_TYPE])
        execution = HistogramMetricFamily(c.IIS_EXECUTION_TIME.name, c.IIS_EXECUTION_TIME.help, labels=[c.L_SITE])
        pools = GaugeMetricFamily(c.IIS_APP_POOL_STATE.name, c.IIS_APP_POOL_STATE.help, labels=[c.L_APP_POOL])
        for site in c.IIS_SITES:
            count = self.rps * site.share * elapsed
            requests.add_metric(["GET", site.site], count)
            server.add_metric([site.site], count * 0.001)
            client.add_metric([site.site], count * 0.004)
            exceptions.add_metric([site.app_name, "System.NullReferenceException"], count * 0.002)
            buckets = [(str(le), count * _cdf(le)) for le in c.IIS_EXECUTION_TIME_BUCKETS] + [("+Inf", count)]
            execution.add_metric([site.site], buckets, sum_value=count * 0.050)
            pools.add_metric([site.app_pool], c.IIS_APP_POOL_RUNNING)
        yield from (requests, server, client, exceptions, execution, pools)


@pytest.fixture
def prometheus_with_the_rules(tmp_path):
    """A real Prometheus loading the committed rule files, scraping normal IIS series every second."""
    required_binary("prometheus")
    registry = CollectorRegistry()
    registry.register(_NormalIis())
    exporter, exporter_thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    server = None
    try:
        job = scrape_job(c.IIS_MOCK, f"127.0.0.1:{exporter.server_port}", "1s", {"tier": "iis"})
        server = start_prometheus(tmp_path, scrape_configs=[job], scrape_interval="1s",
                                  rule_files=[str(RULES_DIR / "*.yml")], extra_args=["--log.level=warn"])
        yield server.url
    finally:
        if server is not None:
            server.stop()
        exporter.shutdown()
        exporter_thread.join(timeout=10)


def _query(url: str, promql: str) -> list[dict]:
    body = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", f"{promql}: {body}"
    return body["data"]["result"]


def _wait_for(url: str, promql: str, count: int, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        result = _query(url, promql)
        if len(result) == count:
            return result
        assert time.monotonic() < deadline, f"{promql}: {len(result)} series after {timeout} s, wanted {count}"
        time.sleep(0.5)


@pytest.mark.prometheus
def test_a_real_prometheus_loads_the_rules_and_records_the_seed_figures(prometheus_with_the_rules):
    url = prometheus_with_the_rules
    sites = len(c.IIS_SITES)
    success = _wait_for(url, "site:windows_iis_success:percent_rate5m", sites)
    assert {r["metric"][c.L_SITE] for r in success} == {s.site for s in c.IIS_SITES}
    assert all(float(r["value"][1]) == pytest.approx(99.5, abs=0.01) for r in success)
    exceptions = _wait_for(url, "app:windows_netframework_exceptions:percent_rate5m", sites)
    assert {r["metric"][c.L_APP_NAME] for r in exceptions} == {s.app_name for s in c.IIS_SITES}
    assert all(float(r["value"][1]) == pytest.approx(0.2, abs=0.001) for r in exceptions)
    (p95,) = _wait_for(url, ":windows_iis_request_execution_time:p95_rate5m", 1)
    assert float(p95["value"][1]) == pytest.approx(0.089, abs=0.001)

    groups = requests.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    expected = {rule.name for rule_file in rules.rule_files().values() for g in rule_file.groups for rule in g.rules}
    assert set(loaded) == expected
    assert {name: (rule["health"], rule.get("lastError", "")) for name, rule in loaded.items()
            if rule["health"] != "ok"} == {}
    firing = [a["metric"]["alertname"] for a in _query(url, "ALERTS") if a["metric"]["alertstate"] == "firing"]
    assert firing == ["Watchdog"], "only the always-firing Watchdog, on normal IIS series"
