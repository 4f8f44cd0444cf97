"""From a metric to a person, live: a native lab (fast profile) with Prometheus loading the
spec's rules, Alertmanager routing and inhibiting, and the alert-receiver storing what arrives.

The issue's scenario: every payment fails (an `error_rate` fault at 100 % on payments); the
payment SLO's fast burn pages; the gateway's circuit breaker towards payments opens and that
warning (service=payments) fires in Prometheus but is inhibited in Alertmanager and never
delivered; clearing the fault brings the resolved
notification. Time from fault to page is printed beside the profile's theoretical floor.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import requests

from obslab import conventions as c
from obslab.profiles import FAST
from obslab.rules import load_catalog
from obslab.rules.slo import burn_condition_seconds
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


class Payer:
    """Alice paying a merchant a cent every few hundred milliseconds: steady payment traffic."""

    def __init__(self, lab: RunningLab) -> None:
        self.session = lab.login("alice")
        self.api = lab.api
        accounts = self.session.get(f"{lab.api}/accounts", timeout=10).json()
        self.account = accounts[0]["id"]
        self.codes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                response = self.session.post(
                    f"{self.api}/payments", timeout=10,
                    json={"account": self.account, "merchant": "Corner Cafe", "amount": "0.01", "currency": "EUR"},
                    headers={c.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())})
                self.codes.append(response.status_code)
            except requests.RequestException:
                self.codes.append(0)

    def __enter__(self) -> Payer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def test_the_lab_runs_alertmanager_and_the_receiver_and_prometheus_notifies_through_them(lab):
    result = lab.run("status", "--json")
    components = {item["name"]: item["healthy"] for item in json.loads(result.stdout)["components"]}
    assert components.get(c.ALERTMANAGER) is True and components.get(c.ALERT_RECEIVER) is True, components
    active = lab.prometheus("/api/v1/alertmanagers")["activeAlertmanagers"]
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


def test_failing_payments_page_through_the_slo_inhibit_the_warning_and_resolve_after_the_fault_is_cleared(lab):
    slo_ratio = f'slo:sli_error:ratio_rate5m{{slo="{PAYMENT_SLO}"}}'
    with Payer(lab) as payer:
        eventually(lambda: lab.query(f"{slo_ratio} == 0"), 90,
                   "payment SLO measured with no errors before the fault")
        # The DDoS detector judges the traffic before the fault, as in any running lab: a payments
        # outage must not look like an attack to it (its alert would inhibit the page).
        eventually(lambda: lab.query(f"{c.DDOS_BINARY_PREDICTION.name} == 0"),
                   120, "the DDoS detector judging the traffic normal before the fault", interval=2)
        lab_age = time.monotonic() - lab.started
        fault_at = time.time()
        fault_id = lab.set_fault("error_rate", c.PAYMENTS, "--rate", "100", "--ttl", "10m")["id"]

        pages = eventually(lambda: delivered(lab, c.ALERT_PAYMENT_AVAILABILITY, "firing", since=fault_at,
                                             long_window="1h"),
                           120, "PaymentAvailabilityBudgetBurn (1h/5m) delivered")
        paged_after = pages[0]["received_at"] - fault_at
        page = pages[0]
        assert page["receiver"] == c.RECEIVER_PAGER
        assert page["labels"][c.L_SEVERITY] == "critical" and page["labels"][c.L_SERVICE] == c.PAYMENTS
        assert page["labels"][c.L_TEAM] == "core-banking"
        runbook = page["runbook_url"]
        assert runbook.endswith(f"/runbooks/{c.ALERT_PAYMENT_AVAILABILITY}.md"), runbook
        response = requests.get(runbook, timeout=5)
        assert response.status_code == 200 and c.ALERT_PAYMENT_AVAILABILITY in response.text
        assert any(code >= 500 for code in payer.codes)

        # The symptom: the gateway's breaker towards payments opens and its warning (the peer's:
        # service=payments) fires in Prometheus; Alertmanager holds it back while the page fires.
        eventually(lambda: lab.firing(c.ALERT_CIRCUIT_BREAKER_OPEN, service=c.PAYMENTS), 90,
                   "CircuitBreakerOpen{service=payments} firing in Prometheus")

        def inhibited() -> list[dict]:
            return [a for a in alertmanager_alerts(lab, c.ALERT_CIRCUIT_BREAKER_OPEN)
                    if a["labels"].get(c.L_SERVICE) == c.PAYMENTS and a["status"]["inhibitedBy"]]

        held = eventually(inhibited, 30, "the payments warning inhibited in Alertmanager")
        assert held[0]["status"]["state"] == "suppressed"
        assert held[0]["labels"]["caller"] == c.GATEWAY
        # Long enough for a delivery had it not been inhibited: group_wait plus two group intervals.
        time.sleep(FAST.group_wait_s + 2 * FAST.group_interval_s)
        assert delivered(lab, c.ALERT_CIRCUIT_BREAKER_OPEN, "firing", since=fault_at, service=c.PAYMENTS) == []

        cleared_at = time.time()
        lab.clear_fault(fault_id)
        resolved = eventually(lambda: delivered(lab, c.ALERT_PAYMENT_AVAILABILITY, "resolved", since=cleared_at,
                                                long_window="1h"),
                              180, lambda: f"the resolved notification of the page ({resolution_state(lab, payer)})")
        assert resolved[0]["receiver"] == c.RECEIVER_PAGER
        resolved_after = resolved[0]["received_at"] - cleared_at

    ddos = lab.prometheus("/api/v1/query_range", query=f'ALERTS{{alertname="{c.ALERT_DDOS_SUSPECTED}"}}',
                          start=fault_at, end=time.time(), step=2)["result"]
    assert ddos == [], "a payments outage raised DDoSAttackSuspected"

    floor = payment_page_floor(lab_age)
    print(f"\nfault -> page: {paged_after:.1f} s (theoretical floor {floor:.1f} s, fast profile); "
          f"clear -> resolved: {resolved_after:.1f} s")
    # The floor assumes a full window of steady traffic; payments before the fault are sparse, so
    # the long window can cross sooner: printed beside the measurement, not asserted as a bound.


def resolution_state(lab: RunningLab, payer: Payer) -> str:
    """What stands between a cleared fault and the resolved page, for a failure message."""
    def values(expr: str) -> list[str]:
        def name(m: dict) -> str:
            return "/".join(filter(None, (m.get("alertname", m.get("__name__")), m.get("long_window"))))
        return [f"{name(r['metric'])}={float(r['value'][1]):.3g}"
                for r in lab.query(expr)]
    burn = values(f'{{__name__=~"slo:burn_rate:ratio_rate.*",slo="{PAYMENT_SLO}"}}')
    firing = values(f'ALERTS{{alertname=~"{c.ALERT_PAYMENT_AVAILABILITY}|{c.ALERT_DDOS_SUSPECTED}",'
                    'alertstate="firing"}')
    in_am = [(a["labels"].get("long_window"), a["status"]["state"])
             for a in alertmanager_alerts(lab, c.ALERT_PAYMENT_AVAILABILITY)]
    return (f"burn rates {burn}; firing in Prometheus {firing}; in Alertmanager {in_am}; "
            f"payer's last answers {payer.codes[-15:]}; notifications {len(notifications(lab))}")


def payment_page_floor(lab_age_s: float) -> float:
    """The 1h/5m pair's theoretical time-to-page under 100 % errors, for the fast profile."""
    policy, slo = load_catalog().slo(PAYMENT_SLO)
    page = next(w for w in policy.burn_windows if w.long == "1h")
    condition = burn_condition_seconds(policy, slo, page, FAST, history_s=lab_age_s)
    return FAST.detection_floor(condition_s=condition, for_=None, dependent_groups=1)
