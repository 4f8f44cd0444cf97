"""``obslab status --verbose`` and ``--watch``: the deep checks of obslab/lab/health.py against
canned Prometheus/Alertmanager/component answers served over real HTTP on loopback, and one case
against the real Prometheus binary. No lab is started: a manifest in a temporary data directory
points the command at these servers (the supervisor check is patched to say "running")."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask, Response, jsonify, request

from obslab import cli
from obslab.cli import status as status_cli
from obslab.lab import health
from obslab.lab.native import NativeLab
from tests.prometheus_support import scrape_job, start_prometheus
from tests.support import free_port, required_binary, serve

PASSWORD = "s3cret-am"
NOW = time.time()


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e9):09d}Z"


def _target(job: str, port: int, health_: str = "up", error: str = "", ago: float = 3.0) -> dict:
    return {"labels": {"job": job, "instance": f"127.0.0.1:{port}"}, "scrapePool": job,
            "scrapeUrl": f"http://127.0.0.1:{port}/metrics", "health": health_, "lastError": error,
            "lastScrape": _rfc3339(time.time() - ago), "lastScrapeDuration": 0.0042}


def _group(name: str, *rules: dict, took: float = 0.003) -> dict:
    return {"name": name, "file": f"/rules/{name}.yml", "interval": 15, "evaluationTime": took,
            "lastEvaluation": _rfc3339(time.time() - 2), "rules": list(rules)}


def _rule(name: str, error: str = "") -> dict:
    return {"name": name, "type": "recording", "query": "up", "health": "err" if error else "ok",
            "lastError": error, "evaluationTime": 0.001, "lastEvaluation": _rfc3339(time.time() - 2)}


class Fakes:
    """A component (gateway), a Prometheus and an Alertmanager, each a Flask app on its own port,
    answering from ``self.state`` (a test changes it)."""

    def __init__(self) -> None:
        self.reset()
        self.servers = [serve(self._gateway()), serve(self._prometheus()), serve(self._alertmanager())]
        self.gateway, self.prometheus, self.alertmanager = (s.url for s in self.servers)

    def reset(self) -> None:
        self.state: dict[str, Any] = {
            "gateway_ready": (200, {"status": "ready", "service": "gateway", "checks": {"database": "ok", "auth": "ok"}}),
            "targets": [_target("gateway", 8080), _target("ddos-detector", 8091)],
            "groups": [_group("slo-transfer", _rule("slo:transfer:ratio_rate5m"))],
            "queries": {},          # substring of the PromQL -> result list
            "am_cluster": {"status": "disabled", "peers": [], "name": ""},
            "am_metrics": ('alertmanager_notifications_total{integration="webhook"} 12\n'
                           'alertmanager_notifications_total{integration="email"} 0\n'
                           'alertmanager_notifications_failed_total{integration="webhook",reason="other"} 3\n'),
        }
        self.queries: list[str] = []

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def _gateway(self) -> Flask:
        app = Flask("fake-gateway")

        @app.get("/ready")
        def ready():
            code, body = self.state["gateway_ready"]
            return jsonify(body), code
        return app

    def _prometheus(self) -> Flask:
        app = Flask("fake-prometheus")

        @app.get("/-/ready")
        def ready():
            return "Prometheus Server is Ready.\n"

        @app.get("/api/v1/targets")
        def targets():
            return {"status": "success", "data": {"activeTargets": self.state["targets"], "droppedTargets": []}}

        @app.get("/api/v1/rules")
        def rules():
            return {"status": "success", "data": {"groups": self.state["groups"]}}

        @app.get("/api/v1/query")
        def query():
            expr = request.args["query"]
            self.queries.append(expr)
            result = next((r for key, r in self.state["queries"].items() if key in expr), [])
            return {"status": "success", "data": {"resultType": "vector", "result": result}}
        return app

    def _alertmanager(self) -> Flask:
        app = Flask("fake-alertmanager")

        @app.before_request
        def basic_auth():
            expected = "Basic " + base64.b64encode(f"operator:{PASSWORD}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return Response("Unauthorized\n", 401)
            return None

        @app.get("/-/ready")
        def ready():
            return "OK"

        @app.get("/api/v2/status")
        def status():
            return {"cluster": self.state["am_cluster"], "config": {"original": "route: {}"},
                    "uptime": _rfc3339(time.time() - 7300), "versionInfo": {"version": "0.25.0"}}

        @app.get("/metrics")
        def metrics():
            return Response(self.state["am_metrics"], content_type="text/plain; version=0.0.4")
        return app


@pytest.fixture(scope="module")
def servers():
    started = Fakes()
    yield started
    started.stop()


@pytest.fixture
def fakes(servers):
    servers.reset()
    return servers


def _write_manifest(data_dir: Path, components: list[dict], started_ago: float = 3600) -> None:
    (data_dir / "run").mkdir(parents=True, exist_ok=True)
    (data_dir / "run" / "lab.json").write_text(json.dumps({"started_at": time.time() - started_ago, "port_offset": 0,
                                                           "profile": "fast", "components": components}))


@pytest.fixture
def lab_dir(tmp_path, fakes, monkeypatch):
    """A data directory whose manifest names the fakes; ``NativeLab.running`` says yes."""
    data_dir = tmp_path / "data"
    password_file = tmp_path / "am-password"
    password_file.write_text(PASSWORD + "\n")
    _write_manifest(data_dir, [
        {"name": "gateway", "url": fakes.gateway, "health_url": f"{fakes.gateway}/ready"},
        {"name": "prometheus", "url": fakes.prometheus, "health_url": f"{fakes.prometheus}/-/ready"},
        {"name": "alertmanager", "url": fakes.alertmanager, "health_url": f"{fakes.alertmanager}/-/ready",
         "health_user": "operator", "health_password_file": str(password_file)},
    ])
    (data_dir / "prometheus" / "data").mkdir(parents=True)
    (data_dir / "prometheus" / "data" / "chunk").write_bytes(b"x" * 300_000)
    (data_dir / "logs").mkdir()
    (data_dir / "logs" / "gateway.log").write_bytes(b"y" * 20_000)
    monkeypatch.setattr(NativeLab, "running", lambda self: True)
    return data_dir


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["status", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- verdicts ------------------------------------------------------------------------------------

def test_a_healthy_lab_exits_0_with_every_section_and_a_healthy_summary(lab_dir, capsys):
    code, out, _ = _run(capsys, "--verbose", "--data-dir", str(lab_dir), "--min-free", "0")
    lines = out.rstrip().splitlines()
    assert code == 0, out
    assert lines[-1].startswith("HEALTHY: 3 components healthy, 2 targets up, 1 rules evaluating"), lines[-1]
    for heading in ("Readiness", "Scrape targets (Prometheus http://127.0.0.1:", "Rules (1 groups, 1 rules",
                    "Alertmanager http://127.0.0.1:", f"Disk ({lab_dir})"):
        assert any(line.startswith(heading) for line in lines), (heading, out)
    assert "ready: auth ok, database ok" in out                     # the gateway's /ready checks
    assert re.search(r"\b\ds ago", out) and "4 ms" in out                        # last scrape age and duration
    assert "version 0.25.0, cluster disabled, 0 peers, up 2h" in out   # read with the lab's basic auth
    assert "notifications since start: webhook 12 sent, 3 failed\n" in out   # history, not a problem
    assert re.search(r"used: prometheus \d+\.\d KiB, logs \d+\.\d KiB, run ", out), out   # largest first


def test_a_down_target_and_a_failing_rule_exit_1_and_are_named_in_the_summary_line(lab_dir, fakes, capsys):
    fakes.state["targets"][1] = _target("ddos-detector", 8091, "down", 'Get "http://127.0.0.1:8091/metrics": '
                                        "dial tcp 127.0.0.1:8091: connect: connection refused")
    fakes.state["groups"] = [_group("slo-transfer", _rule("a"), _rule("b", "many-to-many matching not allowed: "
                                                                            "matching labels must be unique"))]
    fakes.state["queries"]["prometheus_rule_evaluation_failures_total"] = [
        {"metric": {"rule_group": "/etc/prometheus/rules/slos.yml;slo-transfer"}, "value": [NOW, "9"]}]
    code, out, _ = _run(capsys, "--verbose", "--data-dir", str(lab_dir), "--min-free", "0")
    assert code == 1
    assert "evaluating fine now" not in out                          # still failing: a problem, not history
    assert out.rstrip().splitlines()[-1] == (
        "UNHEALTHY: 2 problems: target ddos-detector down (connection refused); "
        "rule group slo-transfer: 1 rule failing (matching labels must be unique)")
    assert "many-to-many matching not allowed" in out               # the whole error in the rules table


def test_a_prometheus_without_targets_yet_is_a_warning_that_says_why(lab_dir, fakes, capsys):
    fakes.state["targets"] = []     # discovery has not handed them over yet, seconds after its start
    code, out, _ = _run(capsys, "--verbose", "--json", "--data-dir", str(lab_dir), "--min-free", "0")
    report = json.loads(out)
    assert code == 0 and not report["problems"]
    assert any("no scrape targets yet" in warning for warning in report["warnings"]), report["warnings"]


def test_notification_failures_count_only_within_the_window(lab_dir, fakes, capsys):
    args = ("--verbose", "--json", "--data-dir", str(lab_dir), "--min-free", "0")
    code, out, _ = _run(capsys, *args)
    assert code == 0, out           # 3 failed since start (the fake's /metrics), none in the last 10m
    assert any("increase(alertmanager_notifications_failed_total[10m])" in q for q in fakes.queries)
    fakes.state["queries"]["alertmanager_notifications_failed_total"] = [
        {"metric": {"integration": "webhook"}, "value": [NOW, "2.0000001"]}]
    fakes.state["queries"]["prometheus_notifications_dropped_total"] = [{"metric": {}, "value": [NOW, "5"]}]
    code, out, _ = _run(capsys, *args)
    body = json.loads(out)
    assert code == 1
    assert body["problems"] == ["prometheus dropped 5 alerts in the last 10m",
                                "alertmanager: 2 failed notifications (webhook) in the last 10m"]
    assert body["alertmanager"]["notifications_since_start"] == {"webhook": {"sent": 12.0, "failed": 3.0},
                                                                 "email": {"sent": 0.0, "failed": 0.0}}


def test_failures_during_the_labs_start_up_are_not_judged(lab_dir, fakes, capsys):
    fakes.state["queries"]["alertmanager_notifications_failed_total"] = [
        {"metric": {"integration": "webhook"}, "value": [NOW, "7"]}]
    manifest = json.loads((lab_dir / "run" / "lab.json").read_text())
    manifest["started_at"] = time.time() - 30           # still booting: nothing asked, nothing judged
    (lab_dir / "run" / "lab.json").write_text(json.dumps(manifest))
    code, out, _ = _run(capsys, "--verbose", "--data-dir", str(lab_dir), "--min-free", "0")
    assert code == 0 and fakes.queries == [], out
    assert "failure counters not judged yet: the lab started less than 2 minutes ago" in out
    manifest["started_at"] = time.time() - 290          # the window starts after the 2-minute grace
    (lab_dir / "run" / "lab.json").write_text(json.dumps(manifest))
    code, out, _ = _run(capsys, "--verbose", "--data-dir", str(lab_dir), "--min-free", "0")
    assert code == 1
    ranges = {int(m) for q in fakes.queries for m in re.findall(r"notifications_failed_total\[(\d+)s\]", q)}
    assert len(ranges) == 1 and 160 <= min(ranges) <= 170, fakes.queries
    assert re.fullmatch(r"UNHEALTHY: 1 problem: alertmanager: 7 failed notifications \(webhook\) in the last 1[67]\ds",
                        out.rstrip().splitlines()[-1]), out


def test_rule_failures_that_recovered_are_a_warning_not_a_problem(lab_dir, fakes, capsys):
    fakes.state["queries"]["prometheus_rule_evaluation_failures_total"] = [
        {"metric": {"rule_group": "/etc/prometheus/rules/slos.yml;slo-transfer"}, "value": [NOW, "4"]}]
    code, out, _ = _run(capsys, "--verbose", "--data-dir", str(lab_dir), "--min-free", "0")
    assert code == 0, out
    assert "rule group slo-transfer: 4 failed evaluations in the last 10m, evaluating fine now" in out


def test_an_unready_component_and_a_settling_cluster_are_problems(lab_dir, fakes, capsys):
    fakes.state["gateway_ready"] = (503, {"status": "unready", "service": "gateway",
                                          "checks": {"database": "failing: OperationalError", "auth": "ok"}})
    fakes.state["am_cluster"] = {"status": "settling", "peers": [{"name": "a", "address": "10.0.0.1:9094"}]}
    code, out, _ = _run(capsys, "--verbose", "--data-dir", str(lab_dir), "--min-free", "0")
    assert code == 1
    assert out.rstrip().splitlines()[-1] == ("UNHEALTHY: 2 problems: component gateway unhealthy "
                                             "(database failing: OperationalError); alertmanager cluster settling")
    assert "unready: auth ok, database failing: OperationalError" in out


def test_an_unhealthy_prometheus_is_one_problem_not_a_cascade(lab_dir, capsys):
    manifest = json.loads((lab_dir / "run" / "lab.json").read_text())
    closed = f"http://127.0.0.1:{free_port()}"          # nothing listens there
    manifest["components"][1].update(url=closed, health_url=f"{closed}/-/ready")
    (lab_dir / "run" / "lab.json").write_text(json.dumps(manifest))
    code, out, _ = _run(capsys, "--verbose", "--data-dir", str(lab_dir), "--min-free", "0")
    assert code == 1
    assert out.rstrip().splitlines()[-1] == "UNHEALTHY: 1 problem: component prometheus unhealthy (not listening)"
    assert "skipped: prometheus is not healthy" in out


def test_little_free_disk_is_a_problem_and_the_data_directory_usage_is_measured(lab_dir, capsys):
    code, out, _ = _run(capsys, "--verbose", "--json", "--data-dir", str(lab_dir), "--min-free", "99.999")
    body = json.loads(out)
    assert code == 1
    assert len(body["problems"]) == 1 and body["problems"][0].startswith("disk: ")
    assert "free on the data directory's filesystem" in body["problems"][0]
    disk = body["disk"]
    assert disk["used_bytes"] >= 320_000
    assert [d["name"] for d in disk["top"]][:2] == ["prometheus", "logs"]
    assert disk["top"][0]["bytes"] >= 300_000


# --- the interface ----------------------------------------------------------------------------------

def test_json_keeps_the_old_shape_and_verbose_only_adds_keys(lab_dir, capsys):
    code, out, _ = _run(capsys, "--json", "--data-dir", str(lab_dir))
    plain = json.loads(out)
    assert code == 0
    assert plain == {"components": [{"name": n, "url": plain["components"][i]["url"], "healthy": True}
                                    for i, n in enumerate(["gateway", "prometheus", "alertmanager"])]}
    code, out, _ = _run(capsys, "--json", "--verbose", "--data-dir", str(lab_dir), "--min-free", "0")
    verbose = json.loads(out)
    assert code == 0
    for old, new in zip(plain["components"], verbose["components"], strict=True):
        assert {k: new[k] for k in old} == old
    assert verbose["components"][0]["readiness"]["checks"] == {"database": "ok", "auth": "ok"}
    assert {"healthy", "problems", "prometheus", "alertmanager", "disk"} <= set(verbose)
    assert verbose["prometheus"]["targets"][0]["last_scrape_age_seconds"] == pytest.approx(3, abs=2)


@pytest.mark.parametrize("args", [["--watch", "0"], ["--watch", "-1"], ["--min-free", "150"]])
def test_usage_errors_exit_2(tmp_path, capsys, args):
    code, _, err = _run(capsys, *args, "--data-dir", str(tmp_path))
    assert code == 2
    assert err.startswith("obslab: error: ")


def test_no_lab_running_keeps_the_old_message_and_exit_1(tmp_path, capsys):
    code, out, err = _run(capsys, "--verbose", "--data-dir", str(tmp_path))
    assert code == 1 and out == ""
    assert "No lab is running from" in err and "obslab up --detach" in err


def test_watch_repeats_with_a_timestamped_header_and_exits_with_the_last_round(lab_dir, fakes, capsys):
    code, out, _ = _run(capsys, "--watch", "0.05", "--rounds", "2", "--data-dir", str(lab_dir))
    assert code == 0
    assert out.count("=== obslab status  ") == 2 and out.count("NAME") == 2 and "\033[" not in out


def test_the_watch_loop_returns_the_last_finished_rounds_status_on_ctrl_c():
    results = iter([(0, "ok\n", ""), (1, "bad\n", "")])

    def round_():
        try:
            return next(results)
        except StopIteration:
            raise KeyboardInterrupt from None

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    assert status_cli.watch(round_, 0.01, out=out) == 1
    assert out.getvalue().count("\033[H\033[2J") == 2              # redrawn in place on a terminal
    assert "[UNHEALTHY]" in out.getvalue().split("\033[H\033[2J")[-1]

    def interrupted():
        raise KeyboardInterrupt
    assert status_cli.watch(interrupted, 0.01, out=io.StringIO()) == 130   # no round finished


def test_watch_with_json_prints_one_document_per_line(lab_dir, capsys):
    code, out, _ = _run(capsys, "--watch", "0.05", "--rounds", "2", "--json", "--verbose", "--min-free", "0",
                        "--data-dir", str(lab_dir))
    documents = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(documents) == 2 and all(d["healthy"] for d in documents)


def test_formatting_helpers():
    assert [health.age(s) for s in (None, 0.4, 12, 125, 7300, 200000)] == [
        "never", "0s ago", "12s ago", "2m ago", "2h ago", "2d ago"]
    assert health.parse_time("0001-01-01T00:00:00Z") is None
    assert health.parse_time("2024-05-01T12:00:00.123456789+02:00") == pytest.approx(1714557600.123457)
    assert health.short_error('Get "http://x/metrics": context deadline exceeded') == "context deadline exceeded"
    assert health.size(512) == "512 B" and health.size(3 * 1024 ** 3) == "3.0 GiB"


# --- against the real Prometheus ---------------------------------------------------------------------

@pytest.mark.prometheus
def test_the_real_prometheus_reports_a_down_target_and_a_failing_rule(tmp_path, monkeypatch, capsys):
    required_binary("prometheus")
    port = free_port()
    rules = tmp_path / "rules.yml"
    # Both `up` series get the same labels: "vector contains metrics with the same labelset".
    rules.write_text(yaml.safe_dump({"groups": [{"name": "clash", "interval": "1s", "rules": [
        {"record": "lab:up", "expr": "up", "labels": {"job": "same", "instance": "same"}}]}]}))
    server = start_prometheus(tmp_path / "prom", port=port, scrape_interval="1s", rule_files=[str(rules)],
                              scrape_configs=[scrape_job("prometheus", f"127.0.0.1:{port}"),
                                              scrape_job("ddos-detector", f"127.0.0.1:{free_port()}")])
    try:
        server.wait_for(lambda: any(t["health"] == "down" for t in server.api("targets")["activeTargets"])
                        and server.api("rules")["groups"][0]["rules"][0]["health"] == "err", 20, "a down target")
        data_dir = tmp_path / "data"
        _write_manifest(data_dir, [{"name": "prometheus", "url": server.url, "health_url": f"{server.url}/-/ready"}])
        monkeypatch.setattr(NativeLab, "running", lambda self: True)
        code, out, _ = _run(capsys, "--verbose", "--data-dir", str(data_dir), "--min-free", "0")
    finally:
        server.stop()
    assert code == 1, out
    summary = out.rstrip().splitlines()[-1]
    assert summary.startswith("UNHEALTHY: 2 problems: target ddos-detector down (connection refused); "
                              "rule group clash: 1 rule failing ("), summary
    assert "skipped: not part of this lab" in out                   # no Alertmanager in this manifest
