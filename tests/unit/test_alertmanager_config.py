"""The generated Alertmanager configuration, checked by the real Alertmanager 0.25 tools.

``amtool check-config`` accepts every variant; ``amtool config routes test`` sends every alert the
spec defines, with the labels it really carries, to the receiver the routing policy below says
(written here, independently of obslab/generators/amconfig.py, so a routing mistake fails); ``amtool template
render`` renders the notification templates from realistic payloads; and a real Alertmanager,
started with the native fast configuration and the lab's web config (its API answers only basic
auth), delivers to the real alert-receiver over loopback: pages, inhibitions, team chat and the
Watchdog heartbeat.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from obslab import rules, secrets, settings
from obslab.generators import amconfig, generate
from obslab import conventions as c
from obslab import topology
from obslab.profiles import FAST, PRODUCTION, Profile
from obslab.rules.build import TESTS_DIR
from obslab.settings import ConfigError
from tests.support import free_port, required_binary, serve, stop_process

CATALOG = rules.load_catalog()
TEAMS = CATALOG.teams
COMPOSE_FILE = settings.repo_root() / "alertmanager" / amconfig.CONFIG_NAME
# Prometheus adds its external labels (obslab/generators/promconfig.py) to every alert it sends.
EXTERNAL_LABELS = {"lab": "obslab", "profile": "fast"}


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([required_binary("amtool"), *args], capture_output=True, text=True, timeout=30)


# --- the routing policy (alertmanager/README.md), stated once, by hand --------------------------

def expected_receiver(labels: dict[str, str]) -> str:
    """Where an alert with ``labels`` must end up: Watchdog -> dead-man switch, critical -> the
    pager, warning -> its team's chat (unknown team: the default team's), anything else -> kept
    but sent nowhere."""
    if labels.get("alertname") == "Watchdog":
        return "deadman"
    severity = labels.get("severity")
    if severity == "critical":
        return "pager"
    if severity == "warning":
        team = labels.get("team", "")
        return f"chat-{team}" if team in TEAMS.teams else f"chat-{TEAMS.default_team}"
    return "blackhole"


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _generated_alert_label_sets() -> list[dict[str, str]]:
    """Every ALERTS label set the generated promtool cases expect, i.e. what Prometheus sends."""
    found = []
    for path in sorted((settings.repo_root() / TESTS_DIR).glob("*_test.yml")):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("promql_expr_test", []):
                for sample in check.get("exp_samples") or []:
                    if sample["labels"].startswith("ALERTS{"):
                        labels = dict(_LABEL.findall(sample["labels"]))
                        labels.pop("alertstate")
                        found.append(labels)
    return found


def _owned_services() -> list[str]:
    """One service of every team that owns one, and one no team owns (-> the default team)."""
    return [spec.services[0] for spec in TEAMS.teams.values() if spec.services] + ["unowned-service"]


def _route_cases() -> list[dict[str, str]]:
    cases = _generated_alert_label_sets()
    for alert in CATALOG.alerts():
        # The team is chosen from the series' service: check one service of every team.
        if alert.team.startswith("{{"):
            for service in _owned_services():
                cases.append({"alertname": alert.alert, c.L_SEVERITY: alert.severity.value,
                              c.L_TEAM: TEAMS.team_of(service), c.L_SERVICE: service,
                              **dict(alert.extra_labels)})
    # Alerts from outside the spec: a team nobody knows, no team, no severity.
    cases += [
        {"alertname": "SomethingNew", "severity": "warning", "team": "nobody", "service": "payments"},
        {"alertname": "SomethingNew", "severity": "warning"},
        {"alertname": "SomethingNew", "service": "payments"},
        {"alertname": "DDoSAttackSuspected", "severity": "critical", "team": "edge", "service": "gateway"},
    ]
    unique = {tuple(sorted(labels.items())): labels for labels in cases}
    return list(unique.values())


ROUTE_CASES = _route_cases()


def _case_id(labels: dict[str, str]) -> str:
    return "-".join(labels.get(key, "_") for key in ("alertname", "severity", "service", "team", "long_window"))


@pytest.fixture(scope="module")
def config_files(tmp_path_factory) -> dict[str, Path]:
    """The committed compose file and native files of both profiles (as `obslab up` writes them)."""
    directory = tmp_path_factory.mktemp("amconfig")
    return {
        "compose": COMPOSE_FILE,
        "native-production": amconfig.write_native(directory / "production", PRODUCTION, offset=0,
                                                   secrets_dir=secrets.secrets_dir()),
        "native-fast": amconfig.write_native(directory / "fast", FAST, offset=1000,
                                             secrets_dir=secrets.secrets_dir()),
    }


# --- amtool: the configuration and every route ---------------------------------------------------

@pytest.mark.parametrize("variant", ["compose", "native-production", "native-fast"])
def test_amtool_check_config_accepts_the_generated_configuration(config_files, variant):
    result = amtool("check-config", str(config_files[variant]))
    assert result.returncode == 0, result.stdout + result.stderr
    # Natively the templates are found and parsed too (a broken template fails check-config).
    if variant.startswith("native"):
        assert " - 1 templates" in result.stdout and "FAILED" not in result.stdout


def test_every_alert_of_the_spec_has_a_route_expectation():
    covered = {labels["alertname"] for labels in ROUTE_CASES}
    assert set(CATALOG.alert_names()) <= covered
    # Both severities of the SLO alerts (page pairs and ticket pairs) are among them.
    slo = {(labels["alertname"], labels["severity"]) for labels in ROUTE_CASES if "long_window" in labels}
    assert ("PaymentAvailabilityBudgetBurn", "critical") in slo and ("PaymentAvailabilityBudgetBurn", "warning") in slo


@pytest.mark.parametrize("variant", ["compose", "native-fast"])
@pytest.mark.parametrize("labels", ROUTE_CASES, ids=_case_id)
def test_amtool_routes_each_alert_to_its_receiver(config_files, variant, labels):
    receiver = expected_receiver(labels)
    matchers = [f"{name}={json.dumps(value)}" for name, value in sorted(labels.items())]
    result = amtool("config", "routes", "test", f"--config.file={config_files[variant]}",
                    f"--verify.receivers={receiver}", *matchers)
    assert result.returncode == 0, f"{labels} should reach {receiver}: {result.stdout}{result.stderr}"
    assert result.stdout.split() == [receiver]


def test_a_wrong_route_expectation_fails():
    result = amtool("config", "routes", "test", f"--config.file={COMPOSE_FILE}", "--verify.receivers=pager",
                    'alertname="ServiceErrorRateHigh"', 'severity="warning"', 'team="core-banking"')
    assert result.returncode != 0
    assert result.stdout.splitlines()[0] == "chat-core-banking"
    assert "did not match" in result.stdout


# --- the configuration's values ------------------------------------------------------------------

def _routes(document: dict) -> dict[str, dict]:
    return {child["receiver"] if child["receiver"] != "blackhole" else "info": child
            for child in document["route"]["routes"]}


@pytest.mark.parametrize("profile", [PRODUCTION, FAST], ids=lambda p: p.name)
def test_intervals_come_from_the_profile_and_the_watchdog_beats_once_per_period(profile: Profile):
    document = amconfig.config("native", profile)
    root = document["route"]
    assert (root["group_wait"], root["group_interval"], root["repeat_interval"]) == tuple(
        amconfig.duration(s) for s in (profile.group_wait_s, profile.group_interval_s, profile.repeat_interval_s))
    assert root["group_by"] == ["alertname", "service"]
    watchdog = _routes(document)["deadman"]
    # Alertmanager re-sends on the first group_interval tick *after* repeat_interval: half the
    # period for both makes one notification per period (checked live below).
    half = amconfig.duration(profile.watchdog_repeat_s // 2)
    assert (watchdog["group_interval"], watchdog["repeat_interval"]) == (half, half)
    assert watchdog["continue"] is False
    pager = _routes(document)["pager"]
    assert settings.parse_duration(pager["repeat_interval"]) < profile.repeat_interval_s


def test_the_shipped_file_has_the_production_values():
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    root = document["route"]
    assert (root["group_wait"], root["group_interval"], root["repeat_interval"]) == ("30s", "5m", "4h")
    assert _routes(document)["pager"]["repeat_interval"] == "1h"
    assert _routes(document)["deadman"]["repeat_interval"] == "2m30s"
    assert document["templates"] == ["/etc/alertmanager/templates/*.tmpl"]
    assert "alertmanager/alertmanager.yml" in generate.generated_files()


def test_every_receiver_posts_to_the_alert_receiver_under_its_own_name():
    for runtime, offset, address in (("compose", 0, "alert-receiver:8095"), ("native", 0, "127.0.0.1:8095"),
                                     ("native", 1000, "127.0.0.1:9095")):
        document = amconfig.config(runtime, FAST, offset=offset)
        names = [receiver["name"] for receiver in document["receivers"]]
        assert names == ["pager", "deadman", *(f"chat-{team}" for team in TEAMS.teams), "blackhole"]
        for receiver in document["receivers"]:
            if receiver["name"] == "blackhole":
                assert set(receiver) == {"name"}, "blackhole sends nothing"
                continue
            [webhook] = receiver["webhook_configs"]
            assert webhook["url"] == f"http://{address}/webhook/{receiver['name']}"
            # A resolved Watchdog means Prometheus stopped: it must not read as a heartbeat.
            assert webhook["send_resolved"] is (receiver["name"] != "deadman")
            assert 1 <= webhook["max_alerts"] <= 100


def test_every_webhook_sends_alertmanagers_control_token_from_the_lab_secrets(tmp_path):
    """The alert-receiver refuses a post without a control token: Alertmanager sends its own,
    read from the lab's secrets (natively <data dir>/run/secrets, in compose the mounted volume)."""
    native_dir = tmp_path / "data" / "run" / "secrets"
    for runtime, token_file in (("compose", "/run/obslab/secrets/alertmanager/token"),
                                ("native", str(native_dir.resolve() / "alertmanager" / "token"))):
        document = amconfig.config(runtime, FAST, secrets_dir=native_dir)
        webhooks = [w for r in document["receivers"] for w in r.get("webhook_configs", [])]
        assert webhooks
        for webhook in webhooks:
            assert webhook["http_config"] == {"authorization": {"type": "Bearer", "credentials_file": token_file}}
    # The token is never in the configuration itself (it is committed, and shown by Alertmanager's UI).
    text = COMPOSE_FILE.read_text()
    assert "credentials:" not in text and "bearer_token:" not in text
    assert text.count("credentials_file: /run/obslab/secrets/alertmanager/token") == len(TEAMS.teams) + 2
    # write_native puts the given lab's token file into the file Alertmanager loads.
    written = yaml.safe_load(amconfig.write_native(tmp_path / "am", FAST, secrets_dir=native_dir).read_text())
    [pager] = [r for r in written["receivers"] if r["name"] == "pager"]
    assert pager["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"] == \
        str(native_dir.resolve() / "alertmanager" / "token")


def test_native_and_compose_differ_only_in_addresses_templates_path_and_token_file(tmp_path):
    native = amconfig.config("native", PRODUCTION, offset=7, secrets_dir=tmp_path / "secrets")
    compose = amconfig.config("compose", PRODUCTION)
    assert native["route"] == compose["route"] and native["inhibit_rules"] == compose["inhibit_rules"]
    native_receivers = (json.dumps(native["receivers"]).replace("127.0.0.1:8102", "alert-receiver:8095")
                        .replace(str((tmp_path / "secrets").resolve()), "/run/obslab/secrets"))
    assert native_receivers == json.dumps(compose["receivers"])
    assert Path(native["templates"][0]).parent == amconfig.TEMPLATES_DIR.resolve()


def _matches(matcher: str, labels: dict[str, str]) -> bool:
    name, op, value = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', matcher).groups()
    actual = labels.get(name, "")
    return {"=": actual == value, "!=": actual != value,
            "=~": re.fullmatch(value, actual) is not None, "!~": re.fullmatch(value, actual) is None}[op]


def _inhibits(rule: dict, source: dict[str, str], target: dict[str, str]) -> bool:
    """Alertmanager's semantics: every source and target matcher matches, the equal labels agree
    (a label missing on both sides counts as equal)."""
    return (all(_matches(m, source) for m in rule["source_matchers"])
            and all(_matches(m, target) for m in rule["target_matchers"])
            and all(source.get(label, "") == target.get(label, "") for label in rule.get("equal", [])))


def _inhibited(source: dict[str, str], target: dict[str, str]) -> bool:
    return any(_inhibits(rule, source, target) for rule in amconfig.config("compose", PRODUCTION)["inhibit_rules"])


def _labels(alertname: str, severity: str, service: str | None = None) -> dict[str, str]:
    out = {"alertname": alertname, "severity": severity}
    if service:
        out["service"] = service
    return out


def test_a_critical_alert_inhibits_the_warnings_of_its_own_service_only():
    page = _labels("BankingServiceDown", "critical", "payments")
    assert _inhibited(page, _labels("ServiceErrorRateHigh", "warning", "payments"))
    assert _inhibited(_labels("PaymentAvailabilityBudgetBurn", "critical", "payments"),
                      _labels("PaymentAvailabilityBudgetBurn", "warning", "payments"))
    assert not _inhibited(page, _labels("ServiceErrorRateHigh", "warning", "accounts"))
    assert not _inhibited(page, _labels("IISAppPoolDown", "critical", "payments"))
    assert not _inhibited(_labels("ServiceErrorRateHigh", "warning", "payments"), page)
    # The Watchdog (info) is neither silenced nor silencing.
    assert not _inhibited(page, _labels("Watchdog", "info", "payments"))
    assert not _inhibited(_labels("Watchdog", "info", "alertmanager"), _labels("TargetDown", "warning", "alertmanager"))
    # Without a service label a critical alert silences nothing (no "both empty, so equal").
    assert not _inhibited(_labels("NoService", "critical"), _labels("OtherNoService", "warning"))


def test_a_ddos_alert_inhibits_exactly_the_alerts_a_flood_causes():
    caused = set(CATALOG.ddos_caused())
    assert caused, "the spec marks the flood's downstream alerts caused_by_ddos"
    for source in ("GatewayFloodSuspected", "DDoSAttackSuspected"):
        flood = _labels(source, "critical", "gateway")
        for name in CATALOG.alert_names():
            for severity in ("critical", "warning"):
                target = _labels(name, severity, "transactions")
                assert _inhibited(flood, target) is (name in caused), (source, name, severity)
        for never in ("GatewayFloodSuspected", "DDoSAttackSuspected", "BankingServiceDown"):
            assert not _inhibited(flood, _labels(never, "critical", "payments"))
    assert not _inhibited(_labels("TransferAvailabilityBudgetBurn", "critical", "transactions"),
                          _labels("GatewayFloodSuspected", "critical", "gateway"))


def test_a_spec_that_lets_a_flood_hide_a_service_down_is_refused():
    with pytest.raises(ConfigError, match="BankingServiceDown must not be caused_by_ddos"):
        amconfig.inhibit_rules(["ServiceLatencyHigh", "BankingServiceDown"], CATALOG.floods(), CATALOG.flood_proof())


def test_write_native_copies_the_templates_and_points_at_the_copy(tmp_path):
    directory = tmp_path / "alertmanager"
    (directory / "templates").mkdir(parents=True)
    (directory / "templates" / "removed.tmpl").write_text('{{ define "gone" }}{{ end }}')
    path = amconfig.write_native(directory, FAST, offset=1000)
    assert path == directory / "alertmanager.yml"
    document = yaml.safe_load(path.read_text())
    [glob] = document["templates"]
    assert glob == str((directory / "templates").resolve() / "*.tmpl")
    copied = sorted(p.name for p in (directory / "templates").glob("*.tmpl"))
    assert copied == sorted(p.name for p in amconfig.TEMPLATES_DIR.glob("*.tmpl")) and "removed.tmpl" not in copied
    text = (directory / "templates" / "obslab.tmpl").read_text()
    assert "http://127.0.0.1:5318/api/traces" in text and "127.0.0.1:4318" not in text, \
        "a lab beside the default one links to its own trace sink"
    assert path.read_text().startswith("# GENERATED by `obslab generate`")


# --- the notification templates, rendered by amtool ------------------------------------------------

def _as_prometheus_renders(text: str, labels: dict[str, str], value: str) -> str:
    text = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), text)
    text = re.sub(r"\{\{\s*\$value[^}]*\}\}", value, text)
    assert "{{" not in text, text
    return text


def _alert(name: str, labels: dict[str, str], *, value: str = "1", status: str = "firing",
           runtime: str = "native") -> dict[str, Any]:
    [rule] = [a for a in CATALOG.alerts() if a.alert == name][:1]
    labels = {"alertname": name, **rule.labels(), **labels, **EXTERNAL_LABELS, "runtime": runtime}
    annotations = {k: _as_prometheus_renders(v, labels, value) for k, v in rule.annotations().items()}
    return {
        "status": status, "labels": labels, "annotations": annotations,
        "startsAt": "2026-11-23T10:15:02.114Z",
        "endsAt": "2026-11-23T10:25:02.114Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up&g0.tab=1", "fingerprint": "5d4b3c6a1f2e7d80",
    }


def _payload(receiver: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "receiver": receiver, "status": "firing" if firing else "resolved", "alerts": alerts,
        "groupLabels": {k: common[k] for k in ("alertname", "service") if k in common},
        "commonLabels": common, "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
    }


def render(tmp_path: Path, template: str, data: dict[str, Any], glob: str | None = None) -> str:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    result = amtool("template", "render", f"--template.glob={glob or amconfig.TEMPLATES_DIR / '*.tmpl'}",
                    f"--template.data={path}", f'--template.text={{{{ template "{template}" . }}}}')
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_pager_text_says_what_where_how_bad_since_when_and_where_to_look(tmp_path):
    down = _alert("BankingServiceDown", {"service": "payments", "team": "core-banking", "job": "payments",
                                         "instance": "127.0.0.1:8084", "tier": "banking"}, value="0")
    data = _payload("pager", [down])

    title = render(tmp_path, "obslab.pager.title", data)
    assert title == ("[FIRING:1] BankingServiceDown payments (core-banking, critical): "
                     "payments is down (127.0.0.1:8084 does not answer scrapes)")
    text = render(tmp_path, "obslab.pager.text", data)
    lines = dict(line.split(":", 1) for line in text.splitlines()[1:] if re.match(r"^[A-Z][a-z ]+:", line))
    assert text.splitlines()[0] == "payments is down (127.0.0.1:8084 does not answer scrapes)"
    assert lines["What"].strip() == "BankingServiceDown (severity critical)"
    assert lines["Where"].strip() == ("service payments, team core-banking, instance=127.0.0.1:8084, job=payments, "
                                      "tier=banking")
    assert "for over a minute (up = 0)" in lines["How bad"]
    assert lines["Since"].strip() == "2026-11-23 10:15:02 UTC"
    assert lines["Runbook"].strip() == topology.runbook_url("BankingServiceDown")
    assert lines["Dashboard"].strip() == topology.dashboard_url(c.DASHBOARD_OVERVIEW)
    traces = urllib.parse.urlsplit(lines["Traces"].strip())
    assert f"{traces.scheme}://{traces.netloc}{traces.path}" == "http://127.0.0.1:4318/api/traces"
    assert urllib.parse.parse_qs(traces.query)["service"] == ["payments"]
    assert "Alertmanager: http://127.0.0.1:9093/#/alerts?receiver=pager" in text
    assert "<no value>" not in title + text


def test_the_chat_text_lists_firing_then_resolved_alerts_with_a_jaeger_search_in_compose(tmp_path):
    slow = _alert("ServiceLatencyHigh", {"service": "accounts", "team": "core-banking"}, value="1.8s",
                  runtime="compose")
    over = _alert("ServiceLatencyHigh", {"service": "accounts", "team": "core-banking"}, value="1.2s",
                  status="resolved", runtime="compose")
    over["startsAt"] = "2026-11-23T09:00:00Z"
    data = _payload("chat-core-banking", [slow, over])

    title = render(tmp_path, "obslab.chat.title", data)
    assert title == "[FIRING:1] ServiceLatencyHigh accounts (core-banking, warning)"
    text = render(tmp_path, "obslab.chat.text", data)
    assert text.index("Firing (1):") < text.index("accounts p95 response time is 1.8s") \
        < text.index("Resolved (1):") < text.index("RESOLVED: accounts p95 response time is 1.2s")
    assert "Since:     2026-11-23 09:00:00 UTC, resolved 2026-11-23 10:25:02 UTC" in text
    [jaeger, _] = re.findall(r"^Traces: +(\S+)$", text, re.M)
    url = urllib.parse.urlsplit(jaeger)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{topology.JAEGER_UI_URL}/search"
    query = urllib.parse.parse_qs(url.query)
    assert query["service"] == ["accounts"] and json.loads(query["tags"][0]) == {"error": "true"}


@pytest.mark.parametrize("template", ["obslab.pager.text", "obslab.chat.text", "obslab.pager.title"])
def test_the_templates_render_every_alert_of_the_spec(tmp_path, template):
    alerts = []
    for labels in _generated_alert_label_sets():
        [rule] = [a for a in CATALOG.alerts() if a.alert == labels["alertname"]][:1]
        alerts.append({"status": "firing", "labels": {**labels, **EXTERNAL_LABELS, "runtime": "compose"},
                       "annotations": rule.annotations(), "startsAt": "2026-11-23T10:15:02Z",
                       "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph",
                       "fingerprint": "0"})
    text = render(tmp_path, template, _payload("pager", alerts))
    assert "<no value>" not in text and "(none" not in text
    if template != "obslab.pager.title":
        for labels in _generated_alert_label_sets():
            assert topology.runbook_url(labels["alertname"]) in text
            assert f"service={urllib.parse.quote_plus(labels['service'])}&" in text


# --- a real Alertmanager with the native fast configuration ---------------------------------------

def alertmanager_auth(secrets_dir: Path | None = None) -> tuple[str, str]:
    """The basic auth Alertmanager's API answers (the lab's web user and its password)."""
    return secrets.ALERTMANAGER_WEB_USER, secrets.alertmanager_web_password(secrets_dir)


@dataclass
class LiveAlertmanager:
    url: str
    receiver_url: str
    watchdog_posted: float

    def post(self, *alerts: dict[str, str]) -> None:
        body = [{"labels": {**labels, **EXTERNAL_LABELS, "runtime": "native"},
                 "annotations": {"summary": f"{labels['alertname']} test alert"}} for labels in alerts]
        response = requests.post(f"{self.url}/api/v2/alerts", json=body, auth=alertmanager_auth(), timeout=5)
        assert response.status_code == 200, response.text

    def alerts(self, alertname: str) -> list[dict]:
        response = requests.get(f"{self.url}/api/v2/alerts", params={"filter": f'alertname="{alertname}"'},
                                auth=alertmanager_auth(), timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def delivered(self, receiver: str | None = None, **labels: str) -> list[dict]:
        """Notifications the alert-receiver stored, holding an alert with all of ``labels``."""
        params = {"limit": 1000, **({"receiver": receiver} if receiver else {})}
        response = requests.get(f"{self.receiver_url}/api/v1/notifications", params=params, timeout=5)
        assert response.status_code == 200, response.text
        return [n for n in response.json()
                if any(labels.items() <= a["labels"].items() for a in n["alerts"])]


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"after {timeout:.0f}s: {what}"
        time.sleep(0.2)
    return result


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from obslab.services.alert_receiver.app import create_app

    required_binary("amtool")
    binary = required_binary("prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("live-alertmanager")
    # The native configuration addresses the receiver at 127.0.0.1:8095 + offset: serve it there.
    receiver_port = free_port()
    offset = receiver_port - topology.DEFAULT_PORTS[c.ALERT_RECEIVER]
    receiver = serve(create_app(f"sqlite:///{tmp / 'alerts.sqlite3'}"), port=receiver_port)
    # Alertmanager sends the token of this test process's lab (tests/conftest.py generated it).
    config = amconfig.write_native(tmp / "alertmanager", FAST, offset=offset, secrets_dir=secrets.secrets_dir())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp / 'alertmanager' / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}", "--cluster.listen-address=",
         f"--web.config.file={amconfig.web_config_file('native', secrets.secrets_dir())}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        def ready() -> bool:
            assert process.poll() is None, (tmp / "alertmanager.log").read_text()
            try:
                return requests.get(f"{url}/-/ready", auth=alertmanager_auth(), timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        eventually(ready, 20, "alertmanager did not become ready")
        am = LiveAlertmanager(url, receiver.url, time.monotonic())
        # Always firing, like Prometheus' Watchdog: the heartbeat test at the end reads its history.
        am.post({"alertname": "Watchdog", "severity": "info", "team": "platform", "service": "alertmanager"})
        yield am
    finally:
        stop_process(process)
        log.close()
        receiver.stop()


# Each live test uses its own services, so that no alert of one inhibits an alert of another.
WAIT_S = 20


def _only_fingerprint(am: LiveAlertmanager, alertname: str, **labels: str) -> str:
    [alert] = [a for a in am.alerts(alertname) if labels.items() <= a["labels"].items()]
    return alert["fingerprint"]


def test_live_a_critical_alert_pages_and_inhibits_the_warnings_of_its_service(live):
    inhibited = {"alertname": "DatabaseErrorsHigh", "severity": "warning", "team": "core-banking",
                 "service": "payments"}
    control = {**inhibited, "team": "fraud", "service": "fraud"}
    assert inhibited["alertname"] not in CATALOG.ddos_caused(), "this test is about the severity rule"

    live.post({"alertname": "BankingServiceDown", "severity": "critical", "team": "core-banking",
               "service": "payments", "job": "payments", "instance": "127.0.0.1:8084"})
    [page] = eventually(lambda: live.delivered("pager", alertname="BankingServiceDown"), WAIT_S,
                        "BankingServiceDown did not reach /webhook/pager")
    assert page["status"] == "firing" and page["alerts"][0]["service"] == "payments"

    live.post(inhibited, control)
    eventually(lambda: live.delivered("chat-fraud", alertname="DatabaseErrorsHigh", service="fraud"), WAIT_S,
               "the control warning did not reach chat-fraud")
    time.sleep(1)   # both groups were due together; give the inhibited one's flush a moment more
    assert live.delivered(alertname="DatabaseErrorsHigh", service="payments") == []
    [alert] = [a for a in live.alerts("DatabaseErrorsHigh") if a["labels"]["service"] == "payments"]
    assert alert["status"]["state"] == "suppressed"
    assert alert["status"]["inhibitedBy"] == [_only_fingerprint(live, "BankingServiceDown", service="payments")]
    [free] = [a for a in live.alerts("DatabaseErrorsHigh") if a["labels"]["service"] == "fraud"]
    assert free["status"]["inhibitedBy"] == []


def test_live_a_gateway_flood_inhibits_the_slo_pages_it_causes(live):
    live.post({"alertname": "GatewayFloodSuspected", "severity": "critical", "team": "edge", "service": "gateway"})
    eventually(lambda: live.delivered("pager", alertname="GatewayFloodSuspected"), WAIT_S,
               "GatewayFloodSuspected did not reach /webhook/pager")

    burn = {"alertname": "TransferAvailabilityBudgetBurn", "severity": "critical", "team": "core-banking",
            "service": "transactions", "slo": "transfer-availability", "long_window": "1h", "short_window": "5m"}
    control = {"alertname": "IISAppPoolDown", "severity": "critical", "team": "windows-platform", "service": "iis",
               "app_pool": "OnlineBankingAppPool"}
    live.post(burn, control)
    eventually(lambda: live.delivered("pager", alertname="IISAppPoolDown"), WAIT_S,
               "the control page did not reach /webhook/pager")
    time.sleep(1)
    assert live.delivered(alertname="TransferAvailabilityBudgetBurn") == []
    [alert] = live.alerts("TransferAvailabilityBudgetBurn")
    assert alert["status"]["inhibitedBy"] == [_only_fingerprint(live, "GatewayFloodSuspected")]


def test_live_a_page_for_one_iis_site_does_not_hide_another_sites_ticket(live):
    """Found by the iis-slow-site drill: every IIS alert has service=iis, so equal [service]
    alone let IISSuccessRateLow for MobileAPI swallow OnlineBanking's slow-site ticket."""
    live.post({"alertname": "IISSuccessRateLow", "severity": "critical", "team": "windows-platform",
               "service": "iis", "site": "MobileAPI"})
    eventually(lambda: live.delivered("pager", alertname="IISSuccessRateLow"), WAIT_S,
               "IISSuccessRateLow did not reach /webhook/pager")
    # (Not alerts a flood causes: an earlier test's GatewayFloodSuspected may still inhibit those.)
    live.post({"alertname": "ProbeIisOtherSite", "severity": "warning", "team": "windows-platform",
               "service": "iis", "site": "OnlineBanking"},
              {"alertname": "ProbeIisSameSite", "severity": "warning", "team": "windows-platform",
               "service": "iis", "site": "MobileAPI"})
    eventually(lambda: live.delivered("chat-windows-platform", alertname="ProbeIisOtherSite"), WAIT_S,
               "OnlineBanking's ticket was inhibited by MobileAPI's page")
    time.sleep(1)
    [same_site] = live.alerts("ProbeIisSameSite")
    assert same_site["status"]["inhibitedBy"] == [_only_fingerprint(live, "IISSuccessRateLow")]


def test_live_a_warning_for_accounts_reaches_the_core_banking_chat(live):
    live.post({"alertname": "DatabaseErrorsHigh", "severity": "warning", "team": "core-banking",
               "service": "accounts"})
    [note] = eventually(lambda: live.delivered("chat-core-banking", alertname="DatabaseErrorsHigh",
                                               service="accounts"), WAIT_S,
                        "the accounts warning did not reach /webhook/chat-core-banking")
    assert note["alerts"][0]["summary"] == "DatabaseErrorsHigh test alert"
    assert live.delivered("pager", alertname="DatabaseErrorsHigh") == []


def test_live_alerts_without_a_service_label_are_neither_inhibited_nor_inhibiting(live):
    live.post({"alertname": "ProbeWithoutServiceCritical", "severity": "critical", "team": "platform"})
    eventually(lambda: live.delivered("pager", alertname="ProbeWithoutServiceCritical"), WAIT_S,
               "the critical alert without service did not page")
    live.post({"alertname": "ProbeWithoutServiceWarning", "severity": "warning", "team": "platform"})
    eventually(lambda: live.delivered("chat-platform", alertname="ProbeWithoutServiceWarning"), WAIT_S,
               "a warning without service was inhibited by a critical alert without service")


def test_live_the_watchdog_reaches_the_deadman_receiver_once_per_period(live):
    period = FAST.watchdog_repeat_s
    remaining = live.watchdog_posted + 2 * period + WAIT_S - time.monotonic()
    beats = eventually(lambda: (found := live.delivered("deadman", alertname="Watchdog")) and len(found) >= 2
                       and found, max(remaining, 1), "the dead-man receiver did not hear the Watchdog twice")
    assert all(n["status"] == "firing" for n in beats)
    newest, previous = beats[0]["received_at"], beats[1]["received_at"]
    assert 0.6 * period <= newest - previous <= 1.4 * period, f"heartbeats {newest - previous:.1f}s apart"
    assert live.delivered("blackhole") == [] and live.delivered("pager", alertname="Watchdog") == []
    started = datetime.fromisoformat(beats[-1]["alerts"][0]["starts_at"].replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - started).total_seconds()) < 300
