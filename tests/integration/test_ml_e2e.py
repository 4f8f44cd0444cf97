"""The ML detectors live: a fast-profile native lab with traffic, its ddos-detector learning
the lab's normal traffic by itself, and its baseliner publishing bands for every algorithm.

The issue's two DDoS cases, in order on one lab: a volume surge of 2.5x with normal client
spread (more customers, same behaviour) must not raise DDoSAttackSuspected; a ddos_flood
from the fault control plane must, and the time from fault to firing is printed.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from obslab import conventions as c
from obslab.bench.ddos import LAB_LOAD as SURGE_ROOM
from tests.integration.lab import RunningLab, eventually, free_offset, obslab, start_lab
from tests.support import required_binary

pytestmark = [pytest.mark.lab, pytest.mark.serial, pytest.mark.usefixtures("untraced_client")]

SURGE_FACTOR = 2.5


@pytest.fixture(scope="module")
def lab(tmp_path_factory, untraced_client):
    required_binary("prometheus")
    data_dir, offset = tmp_path_factory.mktemp("ml") / "data", free_offset(15_000)
    # Room for a surge on two cores, as `obslab bench ddos` runs it: the whole lab serves about
    # 25 req/s here and the load generator's default 8 workers cap it near there.
    running = start_lab(data_dir, offset, env=SURGE_ROOM)
    yield running
    running.stop()


def status(lab: RunningLab, component: str = c.DDOS_DETECTOR) -> dict:
    response = requests.get(f"{lab.url(component)}/api/v1/status", timeout=5)
    response.raise_for_status()
    return response.json()


def test_the_detector_learns_the_labs_normal_traffic_by_itself(lab):
    model = eventually(lambda: status(lab)["model"], 240,
                       lambda: f"a DDoS model trained from live traffic ({status(lab)['reason']})", interval=3)
    assert model["source"] == "bootstrap"
    assert model["rows"]["normal_observed"] >= 20
    assert model["validation"]["recall"] >= 0.9, model["validation"]
    assert set(model["libraries"]) >= {"scikit-learn", "numpy"}
    assert (lab.data_dir / "ml" / "ddos" / "model.json").exists()
    verdict = eventually(lambda: status(lab).get("verdict"), 30, "a fresh verdict")
    assert set(verdict["features"]) == set(verdict["contributions"])
    for name in ("ddos_detection_score", "ddos_confidence", "ddos_binary_prediction"):
        eventually(lambda: lab.query(name), 20, f"{name} in Prometheus")


def test_the_baseliner_publishes_every_algorithms_band_and_the_recommended_threshold(lab):
    query = 'count by (algorithm) (baseline_expected_value{series="gateway_request_rate"})'
    algorithms = eventually(lambda: {r["metric"]["algorithm"] for r in lab.query(query)}
                            >= {"zscore", "seasonalMad", "holtWinters", "quantile", "ensemble"}
                            and lab.query(query),
                            120, "bands of every algorithm for gateway_request_rate", interval=3)
    assert len(algorithms) >= 5
    bounds = lab.query('baseline_recommended_threshold{series="gateway_request_rate"}')
    assert {r["metric"]["bound"] for r in bounds} == {"upper", "lower"}
    assert status(lab, c.BASELINER)["stale"] is False


def test_the_performance_aggregator_scores_each_type_and_says_why(lab):
    def scored() -> dict | None:
        scores = status(lab, c.PERFORMANCE_AGGREGATOR)["scores"]
        ready = {t: s for t, s in scores.items() if s["score"] is not None and s["parts"]["throughput"] is not None}
        return ready if set(ready) == {"transfer", "payment"} else None

    scores = eventually(scored, 180, "a transfer and a payment score with all three parts", interval=3)
    for explained in scores.values():
        assert 0 <= explained["score"] <= 100
        weakest = explained["weakest"]          # the part that pulls the score down, if any does
        assert weakest is None or explained["parts"][weakest] < 1, explained
        # Measured (a fast lab's 30 s window can hold no payment at all: a rate of 0 is a measurement).
        assert explained["inputs"]["throughput_per_second"] >= 0
    # A healthy lab meets its objectives: the score that Prometheus holds says so (the throughput
    # part can lag while the baseliner's first bands settle, so this waits for it).
    eventually(lambda: (lab.value('transaction_performance_score{type="transfer"}') or 0) >= 70, 90,
               lambda: f"a transfer score of at least 70 in Prometheus ({status(lab, c.PERFORMANCE_AGGREGATOR)['scores']})")
    compliance = eventually(lambda: lab.query('slo_compliance_ratio{window="7d"}'), 60, "SLO compliance over 7d")
    assert {r["metric"]["slo"] for r in compliance} >= {"transfer-availability", "payment-availability"}
    kpis = requests.get(f"{lab.url(c.PERFORMANCE_AGGREGATOR)}{c.API_PREFIX}/kpis", timeout=5).json()
    assert {row["type"] for row in kpis[c.BUSINESS_TRANSACTIONS.name]} == {"transfer", "payment"}


def test_the_slo_report_reads_the_live_lab(lab):
    result = lab.run("slo", "report", "--json", timeout=120)          # the window: what Prometheus holds
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["profile"] == "fast"
    by_name = {slo["name"]: slo for slo in report["slos"]}
    assert {"transfer-availability", "payment-availability", "login-availability"} <= set(by_name)
    transfer = by_name["transfer-availability"]
    assert transfer["traffic"] and 0.9 <= transfer["achieved"] <= 1.0, transfer


def gateway_rate(lab: RunningLab, window: str = "10s") -> float:
    return lab.value(f'sum(rate(http_server_requests_total{{service="gateway"}}[{window}]))') or 0.0


def test_a_2_5x_volume_surge_with_normal_client_spread_stays_quiet(lab):
    eventually(lambda: status(lab).get("verdict"), 240, "a fresh verdict")
    target, journeys = "sum(loadgen_target_journeys_per_second)", "sum(rate(loadgen_journeys_total[20s]))"
    base_target, base_journeys = lab.value(target) or 0.0, lab.value(journeys) or 0.0
    before = gateway_rate(lab, "30s")
    fault = lab.set_fault("volume_surge", c.GATEWAY, "--factor", str(SURGE_FACTOR), "--ttl", "90s")["id"]
    peak_target = peak_journeys = peak_rate = 0.0
    attack_verdicts = evaluations = 0
    flagged: list[dict] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            verdict = status(lab).get("verdict")
            if verdict:
                evaluations += 1
                attack_verdicts += verdict["attack"]
                if verdict["attack"]:
                    flagged.append(verdict)
            peak_rate = max(peak_rate, gateway_rate(lab))
            peak_target = max(peak_target, lab.value(target) or 0.0)
            peak_journeys = max(peak_journeys, lab.value(journeys) or 0.0)
            assert not lab.firing("DDoSAttackSuspected"), f"a {SURGE_FACTOR}x surge raised DDoSAttackSuspected"
            time.sleep(2)
    finally:
        lab.clear_fault(fault)
    print(f"\n{SURGE_FACTOR}x surge: customer journeys aimed {base_target:.1f} -> {peak_target:.1f}/s, run "
          f"{base_journeys:.1f} -> {peak_journeys:.1f}/s; gateway {before:.1f} -> {peak_rate:.1f} req/s; "
          f"{attack_verdicts} attack verdicts of {evaluations}, DDoSAttackSuspected never fired")
    # The load generator starts 2.5x the customer journeys; how much more reaches the gateway
    # within the window depends on the machine (two loaded cores: 1.2-1.5x, and customers still
    # being set up blur it); the full 2.5x business-day ramp is checked through the features in
    # tests/unit/test_ddos_model.py.
    assert peak_target >= 2.0 * base_target, "the load generator did not surge"
    assert peak_journeys >= 1.3 * base_journeys, "the extra customers' journeys did not run"
    why = "\n".join(f"score {v['score']}: features {v['features']}, contributions {v['contributions']}"
                    for v in flagged)
    assert evaluations >= 10 and attack_verdicts == 0, f"attack verdicts on a surge:\n{why}"


def test_a_flood_from_the_fault_control_plane_raises_ddos_attack_suspected(lab):
    eventually(lambda: not lab.firing("DDoSAttackSuspected"), 60, "no DDoS alert before the flood")
    started = time.monotonic()
    fault = lab.set_fault("ddos_flood", c.GATEWAY, "--rps", "150", "--sources", "2000", "--ttl", "2m")["id"]
    try:
        eventually(lambda: lab.firing("DDoSAttackSuspected"), 90, "DDoSAttackSuspected firing", interval=1)
        detected_s = time.monotonic() - started
        verdict = status(lab)["verdict"]
    finally:
        lab.clear_fault(fault)
    top = max(verdict["contributions"], key=verdict["contributions"].get)
    print(f"\nflood -> DDoSAttackSuspected firing in Prometheus: {detected_s:.1f} s "
          f"(score {verdict['score']}, confidence {verdict['confidence']}, top feature {top})")
    assert verdict["attack"] and verdict["score"] >= status(lab)["model"]["threshold"]
    assert verdict["contributions"][top] > 0


def test_obslab_ml_train_ddos_trains_from_the_running_lab(lab):
    result = lab.run("ml", "train", "ddos", "--window", "10m", "--force", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["accepted"] and outcome["reason"] == "forced"
    assert outcome["rows"]["flood_observed"] > 0, "the flood of the previous test is validation data"
    assert outcome["candidate"]["recall"] >= 0.9
    decisions = (lab.data_dir / "ml" / "ddos" / "retraining.jsonl").read_text().splitlines()
    assert json.loads(decisions[-1])["source"] == "obslab ml train ddos"


def test_obslab_ml_train_without_prometheus_says_what_to_do(tmp_path, lab):
    result = obslab("ml", "train", "ddos", "--prometheus", "http://127.0.0.1:9", "--data-dir", str(tmp_path),
                    offset=lab.offset, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("obslab: error:")
    assert "unreachable" in result.stderr and "obslab status" in result.stderr


def test_every_grafana_panel_query_returns_data_from_the_lab(lab):
    """Every PromQL query of every dashboard, as Grafana would send it, has data in a lab that saw
    traffic, a surge and a flood; exemplar-enabled latency queries find exemplars with trace ids;
    annotation queries find the flood's fault and its critical alerts in the lab's recent past.
    Panels on metrics only the Collector writes are skipped for the reason printed."""
    from obslab.generators.grafana import DASHBOARDS, compose_only_reason, dashboards, queries

    def query(expr: str) -> list[dict]:
        return lab.query(expr)

    now = time.time()
    failures, skipped, checked = [], {}, 0
    for dashboard in DASHBOARDS:
        model = dashboards.build(dashboard)
        values: dict[str, str] = {}
        for variable in queries.variables(model):      # in order: a variable may use the previous ones
            selector, label = queries.variable_query(variable)
            found = sorted(r["metric"][label] for r in query(queries.substitute(selector, values)))
            if not found:
                failures.append(f"{dashboard.uid}: variable ${variable['name']} has no values ({selector})")
                values[variable["name"]] = "none"
                continue
            values[variable["name"]] = found[0]
        for target in queries.panel_queries(model):
            reason = compose_only_reason(target.expr)
            if reason:
                skipped.setdefault(reason, []).append(target.where())
                continue
            expr = queries.substitute(target.expr, values)
            checked += 1
            if not query(expr):
                failures.append(f"{target.where()}: no data for {expr}")
            elif target.exemplar:
                found = lab.prometheus("/api/v1/query_exemplars", query=expr, start=now - 600, end=now)
                trace_ids = [e["labels"].get("trace_id") for series in found for e in series["exemplars"]]
                if not any(t and len(t) == 32 for t in trace_ids):
                    failures.append(f"{target.where()}: no exemplar with a trace_id for {expr}")
        for annotation in queries.annotation_queries(model):
            if c.DRILL_ACTIVE.name in annotation.expr:
                # Only a lab that ran a drill has it: tests/integration/test_drills_e2e.py checks it.
                skipped.setdefault("drill markers (checked after drills)", []).append(annotation.where())
                continue
            expr = queries.substitute(annotation.expr, values)
            checked += 1
            recent = lab.prometheus("/api/v1/query_range", query=expr, start=now - 1200, end=now, step=5)["result"]
            if not recent:
                failures.append(f"{annotation.where()}: nothing in the last 20 minutes for {expr}")
    print(f"\n{checked} dashboard queries checked against the lab; skipped (compose only):")
    for reason, where in skipped.items():
        print(f"  {len(where)} queries: {reason}\n    " + "\n    ".join(where))
    assert not failures, f"{len(failures)} of {checked} dashboard queries failed:\n" + "\n".join(failures)

