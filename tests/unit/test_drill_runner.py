"""The drill runner's bookkeeping without a lab: a scripted lab (what Prometheus and the receiver
would answer at each moment) and a clock that advances only when the runner sleeps.

The live behaviour is checked against a real lab in tests/integration/test_drills_e2e.py; these
pin the rules that are easy to get wrong and slow to reproduce live.
"""

from __future__ import annotations

import itertools
import time as real_time
from pathlib import Path

import pytest

import obslab.drills.runner as runner
from obslab.drills.catalog import load_drills
from obslab.drills.lab import DrillError
from obslab.profiles import FAST

CATALOG = load_drills()


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def time(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.001)

    def strftime(self, *args):
        return real_time.strftime(*args)

    def gmtime(self, *args):
        return real_time.gmtime(*args)


class ScriptedLab:
    """Answers like a lab would at the clock's time: ``script(t, t0)`` -> (alerts, notifications),
    ``t0`` being when the first fault was set."""

    def __init__(self, tmp_path: Path, clock: Clock, script=None, *, interrupt_after: float | None = None,
                 alertmanager=None) -> None:
        self.data_dir = tmp_path
        self.profile = FAST
        self.urls: dict[str, str] = {}
        self.clock = clock
        self.script = script or (lambda t, t0: ([], []))
        self.faults: dict[str, dict] = {}
        self.stopped: set[str] = set()
        self.ids = itertools.count()
        self.t0: float | None = None
        self.interrupt_after = interrupt_after
        self.alertmanager = alertmanager or (lambda t, t0: [])

    def _now(self) -> tuple[list, list]:
        if self.interrupt_after is not None and self.t0 is not None and self.clock.t - self.t0 > self.interrupt_after:
            raise KeyboardInterrupt
        return self.script(self.clock.t, self.t0)

    def prometheus_alerts(self):
        return self._now()[0]

    def notifications(self, limit: int = 1000):
        return self._now()[1]

    def alertmanager_alerts(self):
        return self.alertmanager(self.clock.t, self.t0)

    def query(self, promql: str):
        return []

    def set_fault(self, body: dict) -> dict:
        self.t0 = self.t0 or self.clock.t
        fault_id = f"flt_{next(self.ids)}"
        self.faults[fault_id] = body
        return {"id": fault_id}

    def clear_fault(self, fault_id: str) -> None:
        self.faults.pop(fault_id, None)

    def stop(self, component: str) -> None:
        self.t0 = self.t0 or self.clock.t
        self.stopped.add(component)

    def start(self, component: str) -> None:
        self.stopped.discard(component)

    def wait_healthy(self, component: str, timeout: float = 60) -> bool:
        return True

    def post_receiver(self, path: str, body: dict) -> None:
        pass


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(runner, "time", fake)
    runner._LEFT["faults"].clear()
    runner._LEFT["stopped"].clear()
    return fake


def note(at: float, receiver: str, alertname: str, status: str = "firing", **labels: str) -> dict:
    return {"id": int(at), "received_at": at, "receiver": receiver, "status": status, "alerts": [
        {"alertname": alertname, "status": status, "starts_at": None, "labels": {"alertname": alertname, **labels}}]}


def firing(alertname: str, **labels: str) -> dict:
    return {"labels": {"alertname": alertname, **labels}, "state": "firing", "activeAt": None}


def run(lab: ScriptedLab, *names: str, **kwargs) -> list[dict]:
    return runner.run_drills([CATALOG.get(n) for n in names], CATALOG, lab, say=lambda _: None, **kwargs)


def test_a_page_at_the_expected_receiver_within_the_deadline_passes_and_is_measured_from_the_fault(tmp_path, clock):
    def script(t, t0):
        if t0 is None or t < t0 + 9:
            return [], []
        return ([firing("BankingServiceDown", service="fraud", job="fraud")],
                [note(t0 + 10, "pager", "BankingServiceDown", service="fraud", job="fraud")])

    lab = ScriptedLab(tmp_path, clock, script)
    [result] = run(lab, "fraud-crash")
    [alert] = result["alerts"]
    assert alert["passed"] and 9 <= alert["fired_seconds"] <= 11 and alert["notified_seconds"] == pytest.approx(10, abs=1)
    assert alert["floor_seconds"] == 12 and alert["ratio"] == pytest.approx(alert["notified_seconds"] / 12, abs=0.01)
    assert lab.stopped == set(), "the stopped component is started again"


def test_a_page_that_never_comes_fails_saying_what_was_waited_for_and_what_was_seen(tmp_path, clock):
    def script(t, t0):
        return ([firing("BankingServiceDown", service="fraud", job="fraud")] if t0 and t > t0 + 5 else [],
                [note(t0 + 10, "chat-fraud", "BankingServiceDown", service="fraud")] if t0 and t > t0 + 10 else [])

    [result] = run(ScriptedLab(tmp_path, clock, script), "fraud-crash")
    [alert] = result["alerts"]
    assert not result["passed"] and not alert["passed"] and alert["notified_seconds"] is None
    assert "waited 60 s for a firing notification of BankingServiceDown{service=fraud} at pager" in alert["why"]
    assert "it fired in Prometheus" in alert["why"] and "delivered to chat-fraud instead" in alert["why"]


def test_a_page_held_back_in_alertmanager_fails_naming_what_inhibited_it(tmp_path, clock):
    page = {"alertname": "PaymentAvailabilityBudgetBurn", "service": "payments", "long_window": "1h"}

    def script(t, t0):
        return ([{"labels": page, "state": "firing", "activeAt": None}] if t0 and t > t0 + 5 else []), []

    def alertmanager(t, t0):
        if not t0 or t < t0 + 5:
            return []
        return [{"fingerprint": "a1", "labels": {"alertname": "DDoSAttackSuspected", "service": "gateway"},
                 "status": {"state": "active", "inhibitedBy": [], "silencedBy": []}},
                {"fingerprint": "b2", "labels": page,
                 "status": {"state": "suppressed", "inhibitedBy": ["a1"], "silencedBy": []}}]

    [result] = run(ScriptedLab(tmp_path, clock, script, alertmanager=alertmanager), "payments-error-storm")
    [alert] = result["alerts"]
    assert not alert["passed"] and "Alertmanager held it back (inhibited by DDoSAttackSuspected)" in alert["why"]


def test_a_pending_flood_verdict_keeps_back_a_drill_whose_page_it_would_inhibit(tmp_path, clock):
    start = clock.t

    def script(t, t0):
        pending = {"labels": {"alertname": "DDoSAttackSuspected", "service": "gateway"}, "state": "pending",
                   "activeAt": None}
        return ([pending] if t < start + 30 else []), []

    lab = ScriptedLab(tmp_path, clock, script)
    run(lab, "payments-error-storm")
    assert lab.t0 is not None and lab.t0 >= start + 30


def test_evidence_from_before_the_causing_step_does_not_count(tmp_path, clock):
    """ddos-at-peak's pages are the flood's (step 1, +20 s), not the peak's."""
    def script(t, t0):
        if t0 is None or t < t0 + 8:
            return [], []
        return [], [note(t0 + 8, "pager", "DDoSAttackSuspected"), note(t0 + 8, "pager", "GatewayFloodSuspected")]

    [result] = run(ScriptedLab(tmp_path, clock, script), "ddos-at-peak")
    assert [a["notified_seconds"] for a in result["alerts"]] == [None, None]
    assert not result["passed"]


def test_the_dead_mans_switch_trips_two_heartbeats_after_the_last_one_even_a_late_one(tmp_path, clock):
    start = clock.t

    def script(t, t0):
        beats = [start - 20, start - 50] + ([t0 + 6] if t0 and t >= t0 + 6 else [])
        return [], [note(b, "deadman", "Watchdog") for b in beats if b <= t]

    [result] = run(ScriptedLab(tmp_path, clock, script), "telemetry-dark")
    [alert] = result["alerts"]
    assert alert["passed"] and alert["absent"]
    assert alert["notified_seconds"] == pytest.approx(6 + 2 * FAST.watchdog_repeat_s, abs=1.5)


def test_a_quiet_alert_that_fires_fails_the_drill(tmp_path, clock):
    def script(t, t0):
        if t0 is None or t < t0 + 5:
            return [], []
        alerts = [firing("BankingServiceDown", service="fraud", job="fraud"),
                  firing("DDoSAttackSuspected", service="gateway")]
        return alerts, [note(t0 + 6, "pager", "BankingServiceDown", service="fraud", job="fraud")]

    [result] = run(ScriptedLab(tmp_path, clock, script), "fraud-crash")
    quiet = {q["alert"]: q for q in result["quiet"]}
    assert not quiet["DDoSAttackSuspected"]["passed"] and "fired in Prometheus" in quiet["DDoSAttackSuspected"]["why"]
    assert quiet["CircuitBreakerOpen"]["passed"]
    assert not result["passed"]


def test_without_keep_going_a_failure_stops_the_rest_and_clears_every_fault(tmp_path, clock):
    lab = ScriptedLab(tmp_path, clock)
    reported: list[str] = []
    results = run(lab, "accounts-latency", "iis-slow-site", "payments-error-storm", parallel=2, keep_going=False,
                  on_result=lambda result: reported.append(result["name"]))
    assert [r["name"] for r in results] == ["accounts-latency", "iis-slow-site"]
    assert sorted(reported) == ["accounts-latency", "iis-slow-site"], "each result is handed over as it ends"
    assert not any(r["passed"] for r in results)
    assert lab.faults == {}


def test_an_interrupted_run_clears_its_faults_and_still_returns_what_it_scored(tmp_path, clock):
    lab = ScriptedLab(tmp_path, clock, interrupt_after=20)
    with pytest.raises(runner.DrillInterrupted) as caught:
        run(lab, "payments-error-storm")
    assert lab.faults == {}
    [result] = caught.value.results
    assert "interrupted before the end" in result["problems"]
    assert runner.read_active(lab)["run"]["faults"] == []


def test_what_a_killed_run_left_is_undone_by_the_next_command_but_not_while_it_lives(tmp_path, clock):
    import os

    lab = ScriptedLab(tmp_path, clock)
    lab.faults["flt_left"] = {}
    lab.stopped.add("prometheus")
    runner.write_active(lab, {"run": {"pid": os.getppid(), "faults": ["flt_left"], "stopped": ["prometheus"]}})
    assert runner.repair(lab, lambda _: None) is False, "its owner still runs"
    runner.write_active(lab, {"run": {"pid": 2 ** 22 + 12345, "faults": ["flt_left"], "stopped": ["prometheus"]},
                              "game": {"faults": ["flt_game"], "stopped": []}})
    assert runner.repair(lab, lambda _: None) is True
    assert lab.faults == {} and lab.stopped == set()
    assert runner.read_active(lab)["game"] == {"faults": ["flt_game"], "stopped": []}, "a game is ended by `end` only"


def test_a_fault_that_cannot_be_cleared_stays_remembered(tmp_path, clock):
    lab = ScriptedLab(tmp_path, clock, interrupt_after=5)

    def refuse(fault_id: str) -> None:
        raise DrillError("fault-injector does not answer")

    lab.clear_fault = refuse
    with pytest.raises(runner.DrillInterrupted):
        run(lab, "payments-error-storm")
    assert runner.read_active(lab)["run"]["faults"] == list(lab.faults)


def test_a_drill_that_keeps_quiet_what_another_causes_runs_first(tmp_path, clock):
    """card-processor-slowdown keeps TransferLatencyBudgetBurn quiet, which slow-database pages
    with: run after it, it would wait for that page to have been quiet a while."""
    lab = ScriptedLab(tmp_path, clock)
    order = []
    lab.set_fault = lambda body: order.append(body["target"]) or {"id": f"flt_{len(order)}"}
    run(lab, "slow-database", "card-processor-slowdown", parallel=1)
    assert order == ["card-processor", "accounts"]


def test_a_drill_waiting_for_calm_is_not_overtaken_by_one_that_causes_what_it_keeps_quiet(tmp_path, clock):
    """card-processor-slowdown waits for a leftover SlowTransactionsHigh; slow-database, which
    pages with the transfer latency alert card keeps quiet, must not start in that gap."""
    start = clock.t

    def script(t, t0):
        leftover = {"labels": {"alertname": "SlowTransactionsHigh", "service": "payments"}, "state": "firing",
                    "activeAt": None}
        return ([leftover] if t < start + 20 else []), []

    lab = ScriptedLab(tmp_path, clock, script)
    order = []
    lab.set_fault = lambda body: order.append(body["target"]) or {"id": f"flt_{len(order)}"}
    run(lab, "slow-database", "card-processor-slowdown", "iis-app-pool-crash", parallel=2)
    assert order.index("card-processor") < order.index("accounts")


def test_a_drill_waits_while_its_diagnosis_still_shows_an_earlier_incident(tmp_path, clock):
    """slow-database right after accounts-latency: the transfers' p99 still holds the slowness for
    one window, and a start then fails "showed the cause before the fault"."""
    start = clock.t
    lab = ScriptedLab(tmp_path, clock)
    lab.query = lambda promql: ([{"metric": {}, "value": [clock.t, "2.5"]}]
                                if "http_server_request_duration_seconds_bucket" in promql and clock.t < start + 20
                                else [])
    [result] = run(lab, "slow-database")
    assert lab.t0 is not None and lab.t0 >= start + 20
    assert result["diagnose"][0]["before"] is None and "before" not in result["diagnose"][0]["why"]


def test_a_drill_waits_until_alertmanager_has_delivered_the_resolution_of_its_page(tmp_path, clock):
    """payments-error-storm right after card-processor-slowdown paged: the page resolved in
    Prometheus, but a storm starting before Alertmanager flushes the resolution fires the same
    alert again, which Alertmanager holds as already sent (CI, 2026-12-07: waited 90 s in vain)."""
    start = clock.t
    page = {"service": "payments", "long_window": "1h", "short_window": "5m"}

    def script(t, t0):
        # Firing in Prometheus until +5 s; the notification carries Prometheus's external labels.
        alerts = [firing("PaymentAvailabilityBudgetBurn", **page)] if t < start + 5 else []
        notes = [note(start - 40, "pager", "PaymentAvailabilityBudgetBurn", lab="obslab", **page)]
        if t >= start + 15:
            notes.append(note(start + 15, "pager", "PaymentAvailabilityBudgetBurn", "resolved", lab="obslab", **page))
        # An unrelated alert of another receiver, still firing, does not hold the drill back.
        notes.append(note(start - 30, "chat-core-banking", "PaymentAvailabilityBudgetBurn", **page))
        return alerts, notes

    lab = ScriptedLab(tmp_path, clock, script)
    run(lab, "payments-error-storm")
    assert lab.t0 is not None and start + 15 <= lab.t0 <= start + 25


def test_a_resolution_alertmanager_never_delivers_holds_the_drill_back_only_for_its_flush_time(tmp_path, clock):
    """Resolved while inhibited (or silenced): Alertmanager sends no resolution at all."""
    start = clock.t
    page = {"service": "payments", "long_window": "1h", "short_window": "5m"}

    def script(t, t0):
        alerts = [firing("PaymentAvailabilityBudgetBurn", **page)] if t < start + 5 else []
        return alerts, [note(start - 40, "pager", "PaymentAvailabilityBudgetBurn", lab="obslab", **page)]

    lab = ScriptedLab(tmp_path, clock, script)
    run(lab, "payments-error-storm")
    grace = FAST.group_wait_s + 2 * FAST.group_interval_s + 4 * FAST.evaluation_s
    assert lab.t0 is not None and start + 5 + grace - 2 <= lab.t0 <= start + 5 + grace + 5


def test_a_page_resolved_before_the_drill_does_not_hold_it_back(tmp_path, clock):
    start = clock.t
    page = {"service": "payments", "long_window": "1h", "short_window": "5m"}

    def script(t, t0):
        return [], [note(start - 20, "pager", "PaymentAvailabilityBudgetBurn", "resolved", **page),
                    note(start - 40, "pager", "PaymentAvailabilityBudgetBurn", **page)]

    lab = ScriptedLab(tmp_path, clock, script)
    run(lab, "payments-error-storm")
    assert lab.t0 is not None and lab.t0 <= start + 5


@pytest.mark.timeout(30)
def test_a_drill_that_never_becomes_calm_cannot_stall_the_run(tmp_path, clock):
    """accounts-latency's alert stays pending; slow-database (held back by it) and the gateway
    drill (waiting for every gentler one) must not keep it from starting and timing out."""
    def script(t, t0):
        stuck = {"labels": {"alertname": "ServiceLatencyHigh", "service": "accounts"}, "state": "pending",
                 "activeAt": None}
        return [stuck], []

    results = run(ScriptedLab(tmp_path, clock, script), "accounts-latency", "slow-database",
                  "gateway-down-blinds-detector", parallel=1, calm_timeout_s=60)
    stuck = next(r for r in results if r["name"] == "accounts-latency")
    assert any("never became calm" in problem for problem in stuck["problems"]), stuck["problems"]
    assert {r["name"] for r in results} == {"accounts-latency", "slow-database", "gateway-down-blinds-detector"}


def test_which_drills_may_run_side_by_side():
    def drill_run(name: str) -> runner.DrillRun:
        return runner.DrillRun(CATALOG.get(name), CATALOG, ScriptedLab(Path("/nonexistent"), Clock()), run_id=name)

    iis, ddos, dark = drill_run("iis-app-pool-crash"), drill_run("ddos-at-peak"), drill_run("telemetry-dark")
    payments, transfers = drill_run("payments-error-storm"), drill_run("transfer-errors")
    accounts, slow_db = drill_run("accounts-latency"), drill_run("slow-database")
    assert iis.compatible(ddos) and ddos.compatible(iis), "the IIS estate does not pass the gateway"
    assert not dark.compatible(iis), "without Prometheus nothing can be observed"
    assert not ddos.compatible(drill_run("iis-slow-site")), "a flood alert inhibits the slow-site ticket"
    assert not ddos.compatible(payments)
    assert payments.compatible(transfers), "different services, side effects scoped to each"
    assert not accounts.compatible(slow_db), "slow accounts burns the transfer latency SLO slow-database expects"
    assert not drill_run("iis-app-pool-crash").compatible(drill_run("iis-error-site")), "the same site"
    assert drill_run("login-outage").compatible(accounts), "auth and accounts: no caller in common but the gateway"


def test_a_fault_keeps_apart_the_drills_watching_the_alerts_of_the_services_it_reaches(tmp_path):
    """A drill that stops fraud and says nothing of transfers still fails them: trace-export-failing
    keeps the transfer page quiet, so the two must not run side by side (they did, in a run of the
    catalogue test, beside its deliberately broken drill)."""
    from obslab.drills.model import Drill

    silent = Drill.model_validate({
        "version": 1, "name": "fraud-stops-quietly", "title": "Fraud stops", "story": "Fraud stops.",
        "cause": "service-down", "timeline": [{"kind": "stop", "target": "fraud", "duration": "1m"}],
        "expect": [{"alert": "BankingServiceDown", "labels": {"service": "fraud"}, "receiver": "pager",
                    "within": "1m"}],
        "diagnose": [{"runbook": "BankingServiceDown", "query": 'up{tier="banking"} == 0',
                      "labels": {"job": "fraud"}, "shows": "== 0"}]})
    lab = ScriptedLab(tmp_path, Clock())
    stops_fraud = runner.DrillRun(silent, CATALOG, lab, run_id="a")
    assert stops_fraud.reach() == {"fraud", "transactions", "payments"}
    for name in ("trace-export-failing", "notifications-unavailable"):
        other = runner.DrillRun(CATALOG.get(name), CATALOG, lab, run_id=name)
        assert not stops_fraud.compatible(other) and not other.compatible(stops_fraud), name
    assert stops_fraud.compatible(runner.DrillRun(CATALOG.get("login-outage"), CATALOG, lab, run_id="l"))
