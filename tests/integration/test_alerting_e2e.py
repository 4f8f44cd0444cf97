"""From a metric to a person, live: a native lab (fast profile) with Prometheus loading the
spec's rules, Alertmanager behind its basic auth, and the alert-receiver hearing the Watchdog.

The scenarios (every payment fails and pages through the SLO while the breaker warning is
inhibited, and the rest) are drills now: drills/*.yml, run by tests/integration/test_drills_e2e.py.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from obslab import conventions as c
from obslab.profiles import FAST
from obslab.rules import load_catalog
from tests.support import required_binary
from tests.integration.lab import RunningLab, eventually, free_offset, start_lab

pytestmark = [pytest.mark.lab, pytest.mark.serial, pytest.mark.usefixtures("untraced_client")]

PAYMENT_SLO = "payment-availability"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, untraced_client):
    for binary in ("prometheus", "prometheus-alertmanager"):
        required_binary(binary)
    running = start_lab(tmp_path_factory.mktemp("alerting") / "data", free_offset(13_000))
    running.started = time.monotonic()  # type: ignore[attr-defined]
    yield running
    running.stop()


def notifications(lab: RunningLab, **filters: str) -> list[dict]:
    response = requests.get(f"{lab.url(c.ALERT_RECEIVER)}/api/v1/notifications", params=filters, timeout=5)
    response.raise_for_status()
    return response.json()


def delivered(lab: RunningLab, alertname: str, status: str, *, since: float, **labels: str) -> list[dict]:
    """Notifications received after ``since`` (epoch s) carrying ``alertname`` in ``status``."""
    found = []
    for note in notifications(lab, alertname=alertname):
        if note["received_at"] < since:
            continue
        for alert in note["alerts"]:
            if alert["alertname"] == alertname and alert["status"] == status and \
                    all(alert["labels"].get(k) == v for k, v in labels.items()):
                found.append({**alert, "receiver": note["receiver"], "received_at": note["received_at"]})
    return found


def alertmanager_alerts(lab: RunningLab, alertname: str) -> list[dict]:
    """Alertmanager's view of ``alertname``, asked with the lab's basic auth (its API wants it)."""
    return lab.alertmanager("/api/v2/alerts", filter=f'alertname="{alertname}"')


def test_the_lab_runs_alertmanager_and_the_receiver_and_prometheus_notifies_through_them(lab):
    result = lab.run("status", "--json")
    components = {item["name"]: item["healthy"] for item in json.loads(result.stdout)["components"]}
    assert components.get(c.ALERTMANAGER) is True and components.get(c.ALERT_RECEIVER) is True, components
    # Prometheus's discovery hands over its first Alertmanager about 5 s after its start, and
    # the lab can be up sooner.
    active = eventually(lambda: lab.prometheus("/api/v1/alertmanagers")["activeAlertmanagers"], 30,
                        "Prometheus discovering the lab's Alertmanager")
    assert [am["url"] for am in active] == [f"{lab.url(c.ALERTMANAGER)}/api/v2/alerts"]
    # Its API answers only the lab's basic auth (`status` above probed /-/ready with it); Prometheus
    # sends it, or the Watchdog below would never arrive; and it scrapes Alertmanager's metrics with it.
    for path in ("/api/v2/alerts", "/api/v2/silences", "/-/ready"):
        assert requests.get(f"{lab.url(c.ALERTMANAGER)}{path}", timeout=5).status_code == 401, path
    assert lab.alertmanager("/api/v2/status")["cluster"]["status"] in ("disabled", "ready")
    eventually(lambda: lab.query(f'up{{job="{c.ALERTMANAGER}"}} == 1'), 60, "Prometheus scraping Alertmanager")
    groups = lab.prometheus("/api/v1/rules")["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert set(load_catalog().alert_names()) <= loaded
    # The fast profile's windows: the 5m ratio reads 30 s of samples.
    sli = next(r for g in groups if g["name"] == f"slo.{PAYMENT_SLO}.sli" for r in g["rules"]
               if r["name"] == "slo:sli_error:ratio_rate5m")
    assert "[30s]" in sli["query"]
    # The Watchdog keeps reaching the dead-man receiver.
    since = time.time() - 600
    beats = eventually(lambda: len({n["received_at"] for n in notifications(lab, receiver=c.RECEIVER_DEADMAN)
                                    if n["received_at"] > since}) >= 2,
                       FAST.group_wait_s + 2 * FAST.watchdog_repeat_s + 30, "two Watchdog notifications at deadman")
    assert beats
