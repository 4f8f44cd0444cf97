"""The IIS mock over real HTTP on loopback, scraped by a real Prometheus.

The exporter runs on an accelerated clock (one real second = one simulated minute) at a quiet
hour (03:00 on a Tuesday, base load), with its ticker running as in the lab; faults are put on
its board directly, as the fault-injector's poll would.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from obslab import conventions as c
from obslab.faults.board import FaultBoard
from obslab.faults.model import Fault
from obslab.iis_mock.clock import SimClock
from obslab.iis_mock.exporter import IisExporter, create_app
from tests.prometheus_support import scrape_job, start_prometheus
from tests.support import serve

pytestmark = pytest.mark.prometheus

SPEED = 60.0
QUIET_HOUR = dt.datetime(2026, 11, 24, 3, 0, tzinfo=dt.timezone.utc).timestamp()

# The seed notes' Windows IIS schema, spelled out: this test guards against drift.
SEED_FAMILIES = {
    "windows_iis_requests": ("counter", {"method", "site"}),
    "windows_iis_current_connections": ("gauge", {"site"}),
    "windows_iis_server_errors": ("counter", {"site"}),
    "windows_iis_client_errors": ("counter", {"site"}),
    "windows_iis_request_execution_time": ("histogram", {"site"}),
    "windows_iis_app_pool_state": ("gauge", {"app_pool"}),
    "windows_netframework_exceptions_thrown": ("counter", {"app_name", "exception_type"}),
    "windows_custom_errors": ("counter", {"error_code", "app_name"}),
}


@pytest.fixture(autouse=True)
def utc_lab(monkeypatch):
    monkeypatch.delenv("OBSLAB_UTC_OFFSET_HOURS", raising=False)


@pytest.fixture
def mock():
    board = FaultBoard(None)
    exporter = IisExporter(clock=SimClock(QUIET_HOUR, SPEED), board=board, seed=7, step_seconds=1.0).start()
    server = serve(create_app(exporter=exporter))
    yield server, board
    server.stop()
    exporter.stop()


def test_metrics_expose_exactly_the_seed_families_with_their_labels_for_every_site(mock):
    server, _ = mock
    response = requests.get(f"{server.url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in parse_text(response.text)}
    assert set(families) == set(SEED_FAMILIES)
    for name, (kind, labels) in SEED_FAMILIES.items():
        family = families[name]
        assert family.type == kind, name
        for sample in family.samples:
            expected = labels | ({"le"} if sample.name.endswith("_bucket") else set())
            assert set(sample.labels) == expected, (sample.name, sample.labels)
    sites = {s.labels["site"] for s in families["windows_iis_requests"].samples}
    pools = {s.labels["app_pool"] for s in families["windows_iis_app_pool_state"].samples}
    assert sites == {s.site for s in c.IIS_SITES} and len(sites) >= 3
    assert pools == {s.app_pool for s in c.IIS_SITES}
    assert all(s.value == c.IIS_APP_POOL_RUNNING for s in families["windows_iis_app_pool_state"].samples)


def test_openmetrics_is_served_when_the_scraper_asks_for_it(mock):
    server, _ = mock
    response = requests.get(f"{server.url}/metrics", timeout=5,
                            headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert {f.name for f in parse_openmetrics(response.text)} == set(SEED_FAMILIES)


def test_health_and_readiness_report_the_simulated_time(mock):
    server, _ = mock
    for path, status in (("/health", "ok"), ("/ready", "ready")):
        body = requests.get(f"{server.url}{path}", timeout=5).json()
        assert body["status"] == status and body["service"] == c.IIS_MOCK and body["speed"] == SPEED
    assert requests.get(f"{server.url}/nope", timeout=5).json()["error"] == "not_found"


def _requests_total(server) -> tuple[float, float]:
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    family = next(f for f in parse_text(text) if f.name == "windows_iis_requests")
    return sum(s.value for s in family.samples if s.name.endswith("_total")), time.monotonic()


def test_counters_advance_with_the_accelerated_clock(mock):
    server, _ = mock
    first, started = _requests_total(server)
    time.sleep(1.5)
    second, ended = _requests_total(server)
    simulated_seconds = (ended - started) * SPEED
    # 03:00 on a weekday: base load, 100 req/s of simulated time.
    assert (second - first) / simulated_seconds == pytest.approx(100.0, rel=0.1)


def _fault(kind: c.FaultKind, target: str, seconds: float, **params) -> Fault:
    now = time.time()
    return Fault(id=f"flt_test_{kind.value}", kind=kind, target=target, params=params,
                 created_at=now, expires_at=now + seconds)


def test_prometheus_sees_a_crash_until_it_is_cleared_and_a_surge_until_it_expires(mock, tmp_path):
    server, board = mock
    target = server.url.removeprefix("http://")
    prometheus = start_prometheus(tmp_path, scrape_configs=[scrape_job(c.IIS_MOCK, target, "1s")])
    try:
        pool = 'windows_iis_app_pool_state{app_pool="MobileAPIAppPool"}'
        error_share = ('sum(rate(windows_iis_server_errors_total{site="MobileAPI"}[3s])) / '
                       'sum(rate(windows_iis_requests_total{site="MobileAPI"}[3s]))')
        surge = ('sum(rate(windows_iis_requests_total{site="OnlineBanking"}[3s])) / '
                 'sum(rate(windows_iis_requests_total{site="MobileAPI"}[3s]))')
        normal_surge = 0.50 / 0.35       # the sites' shares of the estate's load

        prometheus.wait_for(lambda: prometheus.scalar(error_share) is not None, 20, "IIS rates")
        assert prometheus.scalar(pool) == c.IIS_APP_POOL_RUNNING
        assert prometheus.scalar(error_share) < 0.01

        board.replace([_fault(c.FaultKind.APP_POOL_CRASH, "MobileAPIAppPool", 600)])
        prometheus.wait_for(lambda: prometheus.scalar(pool) == c.IIS_APP_POOL_STOPPED, 15, "the stopped pool")
        prometheus.wait_for(lambda: (prometheus.scalar(error_share) or 0) > 0.95, 15, "503s for nearly all")

        board.replace([])                                    # cleared on command
        prometheus.wait_for(lambda: prometheus.scalar(pool) == c.IIS_APP_POOL_RUNNING, 15, "the pool running")
        prometheus.wait_for(lambda: (prometheus.scalar(error_share) or 1) < 0.01, 15, "errors back to 0.1 %")

        board.replace([_fault(c.FaultKind.VOLUME_SURGE, "OnlineBanking", 6, factor=4.0)])
        prometheus.wait_for(lambda: (prometheus.scalar(surge) or 0) > 3 * normal_surge, 15, "the surge")
        # No clearing: the fault expires after six seconds and the load returns by itself.
        prometheus.wait_for(lambda: (prometheus.scalar(surge) or 9) < 1.3 * normal_surge, 20, "the surge's end")
    finally:
        prometheus.stop()
