"""`obslab history` end to end: the real CLI, real promtool, a real Prometheus serving the blocks.

Three days ending on a Monday at 00:00 UTC (Friday, Saturday, Sunday): a weekday with its
business hours and a weekend, with the six seeded incidents inside.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from obslab import conventions as c
from obslab import topology
from obslab.lab.backfill import blocks
from obslab.cli.history import add_arguments
from obslab.lab.history import LabPrometheus, make_plan
from tests.prometheus_support import start_prometheus

pytestmark = pytest.mark.prometheus

DAYS = 3
HOUR = 3600


def last_monday_midnight() -> float:
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - dt.timedelta(days=today.weekday())).timestamp()


def obslab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "OBSLAB_UTC_OFFSET_HOURS"}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "obslab", *args], capture_output=True, text=True,
                          timeout=120, env=environment)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("history-lab")
    end = last_monday_midnight()
    iso_end = dt.datetime.fromtimestamp(end, dt.timezone.utc).isoformat()
    done = obslab("history", "--days", str(DAYS), "--step", "60", "--data-dir", str(data_dir),
                  "--end", iso_end, "--no-wait")
    assert done.returncode == 0, done.stderr
    prometheus = start_prometheus(data_dir / "work", data_dir=data_dir / "prometheus" / "data")
    incidents = json.loads((data_dir / "history" / "incidents.json").read_text())
    yield {"prometheus": prometheus, "end": end, "start": end - DAYS * 86400, "stdout": done.stdout,
           "incidents": incidents, "data_dir": data_dir}
    prometheus.stop()


def test_history_is_served_under_the_labels_the_live_scrapes_add(history):
    prometheus = history["prometheus"]
    found = prometheus.query('count by (job, instance, tier) ({job=~".+"})', history["end"] - HOUR)
    jobs = {r["metric"]["job"]: r["metric"] for r in found}
    assert set(jobs) == {c.IIS_MOCK, c.GATEWAY, c.TRANSACTIONS, c.PAYMENTS}
    for job, labels in jobs.items():
        component = topology.component(job)
        assert labels["instance"] == component.address("native")
        assert labels["tier"] == component.tier
    assert "blocks written to" in history["stdout"] and "incidents.json" in history["stdout"]
    transfers = prometheus.query(f'{c.TRANSACTION_REQUESTS.name}{{job="{c.TRANSACTIONS}",type="transfer"}}',
                                 history["end"])
    assert {r["metric"]["status"] for r in transfers} >= {"completed", "rejected"}


def _half_hourly(prometheus, expr: str, start: float, end: float, incidents: list[dict]) -> dict[float, float]:
    """Rates every half hour, leaving out the points whose 5m window an incident touches."""
    values = prometheus.query_range(expr, start + HOUR, end, HOUR / 2)[0]["values"]
    return {float(t): float(v) for t, v in values
            if not any(i["start_unix"] - 600 <= float(t) <= i["end_unix"] + 600 for i in incidents)}


def _mean(rates: dict[float, float], day: int, hours: range, start: float) -> float:
    chosen = [v for t, v in rates.items() if int((t - start) // 86400) == day and (t - start) % 86400 // HOUR in hours]
    assert len(chosen) >= 3, "too few clean hours to compare"
    return sum(chosen) / len(chosen)


@pytest.mark.parametrize("expr", [
    f'sum(rate({c.IIS_REQUESTS.name}{{job="{c.IIS_MOCK}"}}[5m]))',
    f'sum(rate({c.HTTP_SERVER_REQUESTS.name}{{job="{c.GATEWAY}"}}[5m]))',
], ids=["iis", "gateway"])
def test_a_range_query_shows_business_hours_at_two_to_two_and_a_half_times_the_night_and_quieter_weekends(
        history, expr):
    start = history["start"]
    rates = _half_hourly(history["prometheus"], expr, start, history["end"], history["incidents"])
    friday_night = _mean(rates, 0, range(0, 6), start)
    friday_business = _mean(rates, 0, range(9, 18), start)
    weekend = [_mean(rates, day, range(0, 24), start) for day in (1, 2)]
    assert 2.0 <= friday_business / friday_night <= 2.5
    for level in weekend:
        assert 0.7 <= level / friday_night <= 0.9


def _at(prometheus, expr: str, when: float) -> float:
    value = prometheus.scalar(expr, when)
    assert value is not None, (expr, when)
    return value


SIGNALS = {
    # kind -> (PromQL, lowest value inside the incident, highest value outside)
    "volume_surge": ('sum(rate(windows_iis_requests_total{site="OnlineBanking"}[5m])) / '
                     'sum(rate(windows_iis_requests_total{site="MobileAPI"}[5m]))', 3.5, 1.6),
    "app_pool_crash": ('windows_iis_app_pool_state{app_pool="MobileAPIAppPool"}', 5, 3),
    "exception_storm": ('sum(rate(windows_netframework_exceptions_thrown_total{app_name="CorporatePortal"}[5m]))',
                        30, 2),
    "latency_iis": ('histogram_quantile(0.5, sum by (le) '
                    '(rate(windows_iis_request_execution_time_bucket{site="OnlineBanking"}[5m])))', 0.3, 0.1),
    "latency_banking": ('sum(rate(slow_transactions_total{threshold="500ms",type="transfer"}[5m])) / '
                        'sum(rate(transaction_requests_total{type="transfer"}[5m]))', 0.5, 0.05),
    "unavailable": ('sum(rate(transaction_failures_total{error_code="dependency_unavailable"}[5m])) / '
                    'sum(rate(transaction_requests_total[5m]))', 0.9, 0.02),
}


def test_every_incident_shows_where_incidents_json_says_and_nowhere_else(history):
    prometheus, incidents = history["prometheus"], history["incidents"]
    assert len(incidents) == 6
    seen = set()
    for incident in incidents:
        kind = incident["kind"]
        if kind == "latency":
            kind = "latency_iis" if incident["target"] in {s.site for s in c.IIS_SITES} else "latency_banking"
        expr, inside, outside = SIGNALS[kind]
        start, end = incident["start_unix"], incident["end_unix"]
        assert history["start"] < start < end <= history["end"]
        assert dt.datetime.fromisoformat(incident["start"]).timestamp() == start
        assert _at(prometheus, expr, (start + end) / 2) >= inside, incident
        assert _at(prometheus, expr, start - 30 * 60) <= outside, incident
        assert _at(prometheus, expr, end + 30 * 60) <= outside, incident
        seen.add(kind)
    assert seen == set(SIGNALS)


def test_days_outside_one_to_thirty_are_refused_in_one_line(history):
    done = obslab("history", "--days", "31", "--data-dir", str(history["data_dir"]))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--days must be between 1 and 30" in done.stderr


def test_history_never_overlaps_the_data_prometheus_already_holds(history):
    data_dir = history["data_dir"]
    tsdb = data_dir / "prometheus" / "data"
    again = obslab("history", "--days", "1", "--data-dir", str(data_dir), "--end",
                   dt.datetime.fromtimestamp(history["end"], dt.timezone.utc).isoformat())
    assert again.returncode == 2 and "overlaps the data Prometheus already holds" in again.stderr
    before = {b.ulid for b in blocks(tsdb)}
    # Without --end, more history goes before what is stored (the running Prometheus is found
    # through OBSLAB_PROMETHEUS_URL and reports an empty head).
    earlier = obslab("history", "--days", "1", "--no-incidents", "--no-wait", "--data-dir", str(data_dir),
                     env={"OBSLAB_PROMETHEUS_URL": history["prometheus"].url})
    assert earlier.returncode == 0, earlier.stderr
    assert "ends where the data Prometheus already stores begins" in earlier.stdout
    new = [b for b in blocks(tsdb) if b.ulid not in before]
    first_stored = min(b.min_time for b in blocks(tsdb) if b.ulid in before)
    assert new and max(b.max_time for b in new) <= first_stored     # max_time is exclusive
    incidents = json.loads((data_dir / "history" / "incidents.json").read_text())
    assert len(incidents) == 6            # the first run's labels are kept
    assert Path(data_dir / "history" / "openmetrics").exists() is False


def test_history_ends_before_the_head_of_a_running_prometheus(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    now = 1_795_400_000.0
    head = LabPrometheus(url="http://127.0.0.1:9", flags={}, head_min=now - 3 * HOUR)
    plan = make_plan(parser.parse_args(["--days", "2", "--data-dir", str(tmp_path)]), head, tmp_path / "tsdb",
                     now=lambda: now)
    assert plan.end <= head.head_min - 60 and plan.end % 60 == 0
    assert plan.start == plan.end - 2 * 86400
    assert plan.why_end == "where the data Prometheus already stores begins"
    quiet = make_plan(parser.parse_args(["--days", "2", "--data-dir", str(tmp_path)]), None, tmp_path / "tsdb",
                      now=lambda: now)
    assert quiet.end == ((now - 300) // 60) * 60 and quiet.why_end == "5 minutes before now"
    with pytest.raises(ValueError, match="overlaps the data Prometheus already holds"):
        make_plan(parser.parse_args(["--days", "2", "--end", "now", "--data-dir", str(tmp_path)]), head,
                  tmp_path / "tsdb", now=lambda: now)
