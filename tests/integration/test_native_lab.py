"""One real native lab (waitress-served processes under supervisord, trace sink, Prometheus 2.42),
started with `obslab up --detach --profile fast`, exercised end to end, stopped with `down`."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
import uuid

import pytest
import requests

from obslab import conventions as c
from obslab import topology
from obslab import settings
from tests.integration.lab import eventually, free_offset, start_lab

pytestmark = [pytest.mark.lab, pytest.mark.serial, pytest.mark.usefixtures("untraced_client")]

# Started with --no-traffic: every span and exemplar here comes from the test's own requests.
EXPECTED = {*c.BANKING_SERVICES, c.TRACE_SINK, c.PROMETHEUS, c.FAULT_INJECTOR, c.IIS_MOCK, c.ALERT_RECEIVER, c.ALERTMANAGER,
            *c.ML_SERVICES}
SERVER, CLIENT = "server", "client"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, untraced_client):
    assert shutil.which("prometheus"), "prometheus is missing: run `obslab doctor --install`"
    running = start_lab(tmp_path_factory.mktemp("lab") / "data", free_offset(21_000), "--no-traffic")
    yield running
    assert running.ledger_violations() == []
    result = running.run("down")
    assert result.returncode == 0, result.stderr
    for port in topology.DEFAULT_PORTS.values():
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port + running.offset}/", timeout=2)


@pytest.fixture(scope="module")
def transfer(lab):
    """alice sends bob 12.50 through the gateway; returns (trace_id, response body, alice's token)."""
    alice = lab.login("alice")
    bob = lab.login("bob")
    source = alice.get(f"{lab.api}/accounts").json()[0]["id"]
    target = bob.get(f"{lab.api}/accounts").json()[0]["id"]
    response = alice.post(f"{lab.api}/transfers", json={
        "from_account": source, "to_account": target, "amount": "12.50", "currency": "EUR",
    }, headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=30)
    assert response.status_code == 201, response.text
    trace_id = response.headers["traceresponse"].split("-")[1]
    return trace_id, response.json(), alice.headers["Authorization"].split()[1], (source, target)


def test_status_reports_every_component_healthy_as_json(lab):
    result = lab.run("status", "--json")
    assert result.returncode == 0, result.stderr
    components = json.loads(result.stdout)["components"]
    assert {item["name"] for item in components} == EXPECTED
    assert all(item["healthy"] is True for item in components), components
    assert all(item["url"].startswith("http://127.0.0.1:") for item in components)


def test_up_records_how_long_each_component_took_to_become_healthy(lab):
    manifest = json.loads((lab.data_dir / "run" / "lab.json").read_text())
    healthy_after = manifest["healthy_after"]
    assert set(healthy_after) == EXPECTED
    assert all(0 < seconds <= manifest["startup_seconds"] for seconds in healthy_after.values()), healthy_after
    assert manifest["startup_seconds"] == max(healthy_after.values())


def test_status_verbose_reads_the_labs_prometheus_and_alertmanager_at_its_offset(lab):
    gateway = f"127.0.0.1:{topology.DEFAULT_PORTS[c.GATEWAY] + lab.offset}"

    def verbose_status() -> tuple[subprocess.CompletedProcess, dict] | None:
        result = lab.run("status", "--verbose", "--json", "--min-free", "0", timeout=60)
        report = json.loads(result.stdout)
        # Prometheus's discovery hands over its first targets about 5 s after it started, and
        # the lab can be up sooner: until then the report says so.
        if not report["prometheus"]["targets"]:
            assert any("no scrape targets yet" in w for w in report["warnings"]), report
            return None
        return result, report

    result, report = eventually(verbose_status, timeout=30, what="Prometheus listing the lab's scrape targets")
    # The exit status is the verdict; on a loaded machine a scrape or a probe can time out at that
    # moment (a true observation), but a lab that is up never has a failing rule or cluster.
    assert result.returncode == (1 if report["problems"] else 0), result.stdout
    assert not [p for p in report["problems"] if p.startswith(("rule group", "alertmanager cluster"))], report
    assert {item["name"] for item in report["components"]} == EXPECTED
    assert any(t["job"] == c.GATEWAY and t["instance"] == gateway for t in report["prometheus"]["targets"])
    assert report["prometheus"]["rule_groups"]
    # Read through the lab's basic auth: a single instance with gossip off.
    assert report["alertmanager"]["cluster_status"] == "disabled" and report["alertmanager"]["version"]
    assert report["disk"]["used_bytes"] > 0 and report["disk"]["top"]


def test_a_second_up_says_a_lab_is_running_instead_of_fighting_for_ports(lab):
    result = lab.run("up", "--detach", timeout=60)
    assert result.returncode == 2
    assert "already running" in result.stderr and "obslab down" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_demo_customers_exist_with_eur_checking_and_savings(lab):
    for name in ("alice", "bob"):
        accounts = lab.login(name).get(f"{lab.api}/accounts").json()
        assert sorted(a["type"] for a in accounts) == ["checking", "savings"]
        assert {a["currency"] for a in accounts} == {"EUR"}
        assert all(float(a["balance"]) > 0 for a in accounts)


def test_one_transfer_is_one_trace_across_five_services_correctly_parented(lab, transfer):
    trace_id = transfer[0]
    spans = lab.wait_for_trace(trace_id, {"gateway", "transactions", "fraud", "accounts", "notifications"})
    by_id = {span["spanID"]: span for span in spans}
    assert {span["traceID"] for span in spans} == {trace_id}

    def kind(span):
        return next(t["value"] for t in span["tags"] if t["key"] == "span.kind")

    def parent(span):
        refs = span["references"]
        return by_id[refs[0]["spanID"]] if refs else None

    roots = [span for span in spans if not span["references"]]
    assert len(roots) == 1 and roots[0]["service"] == "gateway" and kind(roots[0]) == SERVER
    for span in spans:
        if span is not roots[0]:
            assert span["references"][0]["spanID"] in by_id, f"orphan span {span['operationName']}"

    def server_span(service):
        return next(s for s in spans if s["service"] == service and kind(s) == SERVER)

    assert parent(server_span("transactions"))["service"] == "gateway"
    assert kind(parent(server_span("transactions"))) == CLIENT
    for service in ("fraud", "accounts", "notifications"):
        caller = parent(server_span(service))
        assert caller["service"] == "transactions" and kind(caller) == CLIENT
    db_spans = [s for s in spans if s["service"] == "accounts" and any(t["key"] == "db.system.name" for t in s["tags"])]
    assert db_spans, "no database spans from accounts"
    tags = {t["key"]: t["value"] for t in server_span("transactions")["tags"]}
    assert tags[c.ATTR_TRANSACTION_TYPE] == "transfer"
    assert tags[c.ATTR_OUTCOME] == "completed"
    assert tags[c.ATTR_AMOUNT_BUCKET] == "lt_100"


def test_stored_spans_hold_no_tokens_passwords_or_full_account_numbers(lab, transfer):
    trace_id, _body, token, accounts = transfer
    lab.wait_for_trace(trace_id, {"gateway", "transactions", "accounts"})
    database = lab.data_dir / "traces" / "spans.sqlite3"
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT name, attributes, events, status_message FROM spans").fetchall()
    stored = "\n".join(" ".join(str(col) for col in row) for row in rows)
    assert len(rows) > 20
    for secret in (token, "demo-password", *accounts):
        assert secret not in stored, f"{secret[:12]}... leaked into spans"
    assert f"acc_****{accounts[0][-4:]}" in stored  # masked form is kept for correlation


def test_log_lines_of_the_transfer_carry_its_trace_id(lab, transfer):
    trace_id = transfer[0]
    deadline = time.monotonic() + 10
    while True:
        mine = [line for line in lab.log_lines("transactions") if line.get("trace_id") == trace_id]
        if any(line["message"] == "money movement finished" for line in mine) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert any(line["message"] == "money movement finished" and line["status"] == "completed" for line in mine)
    assert all(len(line["span_id"]) == 16 for line in mine)
    gateway_lines = [line for line in lab.log_lines("gateway") if line.get("trace_id") == trace_id]
    assert gateway_lines and gateway_lines[0]["route"] == "/api/v1/transfers"


def test_prometheus_exemplars_point_at_traces_that_exist_in_the_sink(lab, transfer):
    trace_id = transfer[0]
    deadline = time.monotonic() + 60
    found = []
    while time.monotonic() < deadline:
        now = time.time()
        data = lab.prometheus("/api/v1/query_exemplars", query='transaction_duration_seconds_bucket{type="transfer"}',
                              start=now - 600, end=now)
        found = [e["labels"]["trace_id"] for series in data for e in series["exemplars"]]
        if trace_id in found:
            break
        time.sleep(1)
    assert trace_id in found, f"exemplar of {trace_id} not in Prometheus; saw {found[:5]}"
    gateway = lab.prometheus("/api/v1/query_exemplars", query='http_server_request_duration_seconds_bucket{service="gateway"}',
                             start=time.time() - 600, end=time.time())
    some = {e["labels"]["trace_id"] for series in gateway for e in series["exemplars"]}
    assert some
    for exemplar_trace in list(some)[:10]:
        lab.wait_for_trace(exemplar_trace, {"gateway"}, timeout=15)


def test_prometheus_scrapes_every_component_with_the_seed_metric_names(lab, transfer):
    deadline = time.monotonic() + 30
    while True:
        up = {r["metric"]["job"]: r["value"][1] for r in lab.prometheus("/api/v1/query", query="up")["result"]}
        totals = lab.prometheus("/api/v1/query", query='transaction_requests_total{type="transfer"}')["result"]
        if (up.keys() >= EXPECTED and set(up.values()) == {"1"} and totals) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert up.keys() >= EXPECTED and set(up.values()) == {"1"}, up
    assert {r["metric"]["status"] for r in totals} >= {"completed"}
    assert all(set(r["metric"]) >= {"type", "status", "job", "instance"} for r in totals)


@pytest.mark.parametrize("component", sorted({*c.BANKING_SERVICES, c.TRACE_SINK}))
def test_promtool_finds_no_problem_in_any_metrics_endpoint(lab, component, transfer):
    body = requests.get(f"{lab.url(component)}/metrics", timeout=5).text
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        result.stdout + result.stderr


@pytest.mark.parametrize("component", sorted({*c.BANKING_SERVICES, c.TRACE_SINK}))
def test_every_component_answers_health_ready_and_openmetrics(lab, component):
    base = lab.url(component)
    assert requests.get(f"{base}/health", timeout=5).json()["status"] == "ok"
    assert requests.get(f"{base}/ready", timeout=5).status_code == 200
    metrics = requests.get(f"{base}/metrics", timeout=5,
                           headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert metrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert metrics.text.rstrip().endswith("# EOF")


def test_the_readme_walk_through_runs_as_written(lab):
    """The copy-paste walk-through of README.md, against this lab's ports and log directory."""
    readme = (settings.repo_root() / "README.md").read_text()
    section = readme[readme.index("## Walk-through"):]
    script = section[section.index("```sh\n") + 6:section.index("\n```", section.index("```sh\n"))]
    first, rest = script.split("\n", 1)
    assert first.startswith("API=http://127.0.0.1:8080/api/v1 ")
    header = (f"API={lab.api} SINK={lab.url(c.TRACE_SINK)} PROM={lab.url(c.PROMETHEUS)} "
              f"LOGS={lab.data_dir / 'logs'}")
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", header + "\n" + rest],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "exemplar found for trace" in result.stdout
    for service in ("gateway", "transactions", "fraud", "accounts", "notifications"):
        assert f"\n{service} " in result.stdout, service


def test_the_labs_files_are_its_users_alone(lab):
    """Data directories 0700, databases, logs, keys and the TSDB 0600, from their creation (the
    lab runs under umask 077, which supervisord passes to every component it starts)."""
    import os
    import stat

    exposed = []
    for root, folders, files in os.walk(lab.data_dir):
        for name in [*folders, *files]:
            path = os.path.join(root, name)
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if mode & 0o077:
                exposed.append(f"{path} {oct(mode)}")
    assert exposed == []


def test_a_backup_under_transfers_restores_into_a_fresh_directory_that_up_serves_as_it_was(lab, tmp_path):
    """The issue's backup scenario (tests/integration/backup_scenario.py), last on this module's lab:
    transfers running during the backup, more money, a fault and a page after it; restored into a
    fresh directory and started with `up`: balances to the cent, the ledger summing to zero, the
    notifications and audit entries of before (not after), Prometheus answering for before."""
    from tests.integration.backup_scenario import backup_round_trip

    backup_round_trip(lab, tmp_path)
