"""Incident drills against a live fast-profile lab: the whole catalogue passes, a drill that
cannot be met fails saying what it waited for and what it saw, a quiet alert that fires fails
its drill, an interrupted drill leaves no fault behind, and a game day is scored. Last, the
baseliner's levelNovelty on the lab the catalogue has aged.

Every figure of the catalogue run (fired, notified, floor, ratio, resolved) is printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from obslab import conventions as c
from obslab.drills.catalog import load_drills
from obslab.profiles import FAST
from tests.integration.lab import RunningLab, eventually, free_offset, obslab, start_lab
from tests.support import required_binary

pytestmark = [pytest.mark.lab, pytest.mark.serial, pytest.mark.usefixtures("untraced_client")]

# Compatible drills run side by side (obslab/drills/runner.py decides which may).
PARALLEL = 4
CATALOGUE_TIMEOUT_S = 1500


@pytest.fixture(scope="module")
def lab(tmp_path_factory, untraced_client):
    for binary in ("prometheus", "prometheus-alertmanager"):
        required_binary(binary)
    running = start_lab(tmp_path_factory.mktemp("drills") / "data", free_offset(14_000))
    yield running
    running.stop()


def drill(lab: RunningLab, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`obslab drill ...` against this lab (found through its data directory)."""
    return lab.run("drill", *args, timeout=timeout)


def spawn(lab: RunningLab, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OBSLAB_PORT_OFFSET": str(lab.offset)}
    return subprocess.Popen([sys.executable, "-m", "obslab", "drill", *args, "--data-dir", str(lab.data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def active_faults(lab: RunningLab) -> list[dict]:
    result = lab.fault("list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# Two drills that must fail, run with the catalogue (side by side with it where they may): one
# expects a label no alert carries, one keeps quiet what its own fault raises. They crash an IIS
# application pool, so they run beside the banking drills, not in their chain.
BROKEN = {
    "impossible-label": """\
        version: 1
        name: impossible-label
        title: Expects a label no alert carries
        story: An application pool stops; the drill waits for its page on an instance that does not exist.
        cause: iis-app-pool-crash
        timeline: [{kind: app_pool_crash, target: CorporatePortalAppPool, duration: 1m}]
        expect:
          - alert: IISAppPoolDown
            labels: {app_pool: CorporatePortalAppPool, instance: "nowhere:1"}
            receiver: pager
            within: 30s
        diagnose:
          - runbook: IISAppPoolDown
            query: windows_iis_app_pool_state != 3
            labels: {app_pool: CorporatePortalAppPool}
            shows: "> 3"
        """,
    "quiet-fires": """\
        version: 1
        name: quiet-fires
        title: Keeps quiet what the fault must raise
        story: An application pool stops, and the drill claims no IISAppPoolDown may fire for it.
        cause: iis-app-pool-crash
        timeline: [{kind: app_pool_crash, target: CorporatePortalAppPool, duration: 1m}]
        expect:
          - alert: IISAppPoolDown
            labels: {app_pool: CorporatePortalAppPool}
            receiver: pager
            within: 60s
        quiet:
          - alert: IISAppPoolDown
            labels: {service: iis}
        diagnose:
          - runbook: IISAppPoolDown
            query: windows_iis_app_pool_state != 3
            labels: {app_pool: CorporatePortalAppPool}
            shows: "> 3"
        """,
}


@pytest.mark.timeout(CATALOGUE_TIMEOUT_S + 420)   # warm-up and the whole catalogue: minutes
def test_every_drill_of_the_catalogue_passes_with_its_figures_and_broken_drills_fail_saying_why(lab, tmp_path,
                                                                                              capsys):
    from obslab.settings import repo_root

    for path in (repo_root() / "drills").glob("*.yml"):
        (tmp_path / path.name).write_text(path.read_text())
    for name, text in BROKEN.items():
        (tmp_path / f"{name}.yml").write_text(textwrap.dedent(text))
    # As on any lab: drills start once the DDoS detector has learned the lab's normal traffic and
    # judges it normal (a detector still learning flags anything; several drills keep it quiet).
    steady = []
    eventually(lambda: steady.append(bool(lab.query("max(ddos_binary_prediction) == 0"))) or steady[-6:] == [True] * 6,
               300, "the DDoS detector judging the lab's traffic normal for 30 s", interval=5)
    started = time.monotonic()
    result = drill(lab, "run", "--all", "--json", "--keep-going", "--parallel", str(PARALLEL),
                   "--drills", str(tmp_path), timeout=CATALOGUE_TIMEOUT_S)
    took = time.monotonic() - started
    assert result.stdout, result.stderr[-3000:]
    print(result.stderr)        # the run's progress (what each drill waited for), shown if this fails
    drills = json.loads(result.stdout)["drills"]
    from obslab.cli.drill import summary

    with capsys.disabled():     # the figures belong in `make test`'s output, passed or not
        print(f"\n{len(drills)} drills in {took:.0f} s (up to {PARALLEL} at once, fast profile)\n" + summary(drills))
    names = [d["name"] for d in json.loads(obslab("drill", "list", "--json", offset=lab.offset).stdout)]
    assert sorted(d["name"] for d in drills) == sorted([*names, *BROKEN])
    for result_ in drills:
        assert set(result_) >= {"name", "passed", "alerts", "quiet", "diagnose", "unexpected", "report"}
        for alert in result_["alerts"]:
            assert set(alert) >= {"alert", "receiver", "fired_seconds", "notified_seconds", "floor_seconds",
                                  "resolved_seconds", "passed"}
        assert Path(result_["report"]).exists() and Path(result_["report"]).with_suffix(".html").exists()
    failed = {d["name"]: d["problems"] for d in drills if not d["passed"] and d["name"] not in BROKEN}
    assert failed == {}, json.dumps(failed, indent=1)
    assert result.returncode == 1, "the broken drills fail the run"

    by_name = {d["name"]: d for d in drills}
    impossible = by_name["impossible-label"]
    [alert] = impossible["alerts"]
    assert not impossible["passed"] and alert["notified_seconds"] is None
    assert "waited 30 s for a firing notification of IISAppPoolDown{app_pool=CorporatePortalAppPool,instance=nowhere:1}" \
        in alert["why"], alert["why"]
    assert "(saw IISAppPoolDown{" in alert["why"], f"the report names what it saw instead: {alert['why']}"
    quiet = by_name["quiet-fires"]
    assert quiet["alerts"][0]["passed"]
    [held] = quiet["quiet"]
    assert not held["passed"] and ("fired in Prometheus" in held["why"] or "delivered" in held["why"]), held
    assert active_faults(lab) == []

    # The page's runbook link resolves to its page at the receiver.
    receiver = lab.url(c.ALERT_RECEIVER)
    pages = requests.get(f"{receiver}/api/v1/notifications", timeout=10,
                         params={"alertname": "PaymentAvailabilityBudgetBurn", "receiver": c.RECEIVER_PAGER}).json()
    runbook = pages[0]["alerts"][0]["runbook_url"]
    assert requests.get(runbook, timeout=10).status_code == 200

    # The receiver has every report, listed at /drills and linked from its front page.
    stored = {row["run_id"] for row in requests.get(f"{receiver}/api/v1/drills", timeout=10).json()}
    assert {Path(d["report"]).stem for d in drills} <= stored
    page = requests.get(f"{receiver}/drills", timeout=10)
    assert page.status_code == 200 and all(d["name"] in page.text for d in drills)
    assert 'href="/drills"' in requests.get(f"{receiver}/", timeout=10).text

    # Drill start and end are series the dashboards annotate (every dashboard's "Drills").
    from obslab.generators.grafana import DASHBOARDS, dashboards, queries

    [marker] = {a.expr for d in DASHBOARDS for a in queries.annotation_queries(dashboards.build(d))
                if c.DRILL_ACTIVE.name in a.expr}
    now = time.time()
    marked = lab.prometheus("/api/v1/query_range", query=marker, start=now - took - 60, end=now, step=2)["result"]
    # (A drill that stops Prometheus runs while nothing scrapes: its mark may fall in the gap.)
    blind = {d.name for d in load_drills(tmp_path).drills if any(s.target == c.PROMETHEUS for s in d.timeline)}
    assert {d["name"] for d in drills} - blind <= {series["metric"]["drill"] for series in marked}
    # The last drills' counts reach Prometheus with its next scrapes; a drill that restarted
    # Prometheus (telemetry-dark) leaves it seconds from its first scrape (its discovery takes ~5 s).
    def counted() -> set[str]:
        ended = lab.query(f"sum by (drill, result) ({c.DRILL_RUNS.name})")
        return {d["name"] for d in drills} - {series["metric"]["drill"] for series in ended}

    eventually(lambda: not counted(), 60, lambda: f"Prometheus counting every drill's run (missing: {counted()})")


def test_an_interrupted_drill_clears_its_fault_and_a_killed_one_is_repaired_by_the_next_command(lab):
    for how in (signal.SIGINT, signal.SIGKILL):
        process = spawn(lab, "run", "payments-error-storm")
        try:
            faults = eventually(lambda: [f for f in active_faults(lab) if "payments-error-storm" in f["reason"]],
                                120, "the drill's fault set")
            assert faults[0]["expires_at"] is not None, "a drill's fault carries a TTL"
            process.send_signal(how)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        if how == signal.SIGINT:
            assert process.returncode == 130, process.stderr.read()
            assert "interrupted" in process.stderr.read()
            assert active_faults(lab) == []
        else:
            assert [f["id"] for f in active_faults(lab)] == [faults[0]["id"]], "killed outright: the fault stays"
            result = drill(lab, "end")
            assert result.returncode == 0, result.stderr
            assert f"cleared fault {faults[0]['id']}" in result.stdout
            assert active_faults(lab) == []


def test_a_game_day_is_scored(lab):
    result = drill(lab, "start", "fraud-crash")
    assert result.returncode == 0, result.stderr
    assert "fraud-crash" not in result.stdout, "game mode does not name the drill"
    started = time.time()

    def paged() -> bool:
        notes = requests.get(f"{lab.url(c.ALERT_RECEIVER)}/api/v1/notifications",
                             params={"alertname": "BankingServiceDown", "receiver": c.RECEIVER_PAGER},
                             timeout=5).json()
        return any(n["received_at"] >= started - 5 and n["status"] == "firing" for n in notes)

    eventually(paged, 90, "the page for fraud")
    answered = drill(lab, "answer", "service-down")
    assert answered.returncode == 0, answered.stderr
    wrong = drill(lab, "answer", "not-a-cause")
    assert wrong.returncode == 2 and "choose one of" in wrong.stderr
    # The runbook's mitigation (start the process again) ends the incident before the game does.
    restarted = lab.run("restart", "fraud")
    assert restarted.returncode == 0, restarted.stderr
    eventually(lambda: not lab.firing("BankingServiceDown", service="fraud"), 60, "the page resolved")
    ended = drill(lab, "end", "--json")
    assert ended.returncode == 0, ended.stderr
    score = json.loads(ended.stdout)
    print(f"\ngame day: {score}")
    assert score["drill"] == "fraud-crash" and score["answer"] == "service-down" and score["answer_correct"]
    assert 0 < score["first_notification_seconds"] <= score["answer_seconds"]
    assert score["mitigated_before_clear"] is True
    history = json.loads(drill(lab, "history", "--json").stdout)
    assert history[0]["mode"] == "game" and history[0]["name"] == "fraud-crash"
    state = json.loads((lab.data_dir / "drills" / "active.json").read_text())
    assert state["game"] is None, "the game is over and nothing of it is left to repair"


def test_the_baseliner_publishes_level_novelty_once_the_lab_has_settled_levels(lab):
    """Here, not with the ML tests: levelNovelty's reference is what a series did until
    baseline_adopt_s ago, so it needs a lab at least that old and a refit after it, and this
    lab, having run the catalogue, is the oldest of the suite (no test waits for its age)."""
    query = 'count by (algorithm) (baseline_expected_value{series="gateway_request_rate"})'
    patience = FAST.baseline_adopt_s + 2 * FAST.baseline_refit_s + 60
    algorithms = eventually(lambda: {r["metric"]["algorithm"] for r in lab.query(query)}
                            >= {"zscore", "seasonalMad", "holtWinters", "quantile", "ensemble", "levelNovelty"}
                            and lab.query(query),
                            patience, "levelNovelty's band for gateway_request_rate", interval=3)
    assert len(algorithms) == 6
    scores = lab.query('baseline_anomaly_score{series="gateway_request_rate",algorithm="levelNovelty"}')
    assert scores and 0.0 <= float(scores[0]["value"][1]) <= 1.0
