"""The alerting spec (prometheus/spec/) -> rule files, promtool tests, index: conventions,
validation, generation, and the generated files checked by the real promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from obslab import conventions as c
from obslab import topology
from obslab import rules, settings
from obslab.generators import generate
from obslab.cli import main
from obslab.profiles import FAST, PRODUCTION
from obslab.rules import AlertRule, RecordingRule, RuleGroup, build, spec
from obslab.settings import ConfigError
from tests.support import required_binary

ROOT = settings.repo_root()
RULES_DIR = ROOT / "prometheus" / "rules"
SPEC_DIR = ROOT / "prometheus" / "spec"
CATALOG = rules.load_catalog()


def _rendered_alerts() -> list[dict]:
    found = []
    for relative in CATALOG.rule_files():
        for group in yaml.safe_load((ROOT / relative).read_text())["groups"]:
            found += [rule for rule in group["rules"] if "alert" in rule]
    return found


# --- what the spec defines ----------------------------------------------------------------------

def test_the_spec_defines_the_slos_and_symptom_alerts_the_issue_asks_for():
    names = set(CATALOG.alert_names())
    assert {"TransferAvailabilityBudgetBurn", "TransferLatencyBudgetBurn", "LoginAvailabilityBudgetBurn",
            "PaymentAvailabilityBudgetBurn"} <= names
    assert {"BankingServiceDown", "TargetDown", "ServiceLatencyHigh", "SlowTransactionsHigh", "CircuitBreakerOpen",
            "DatabaseErrorsHigh", "TelemetrySpansDropped", "Watchdog", "ServiceErrorRateHigh"} <= names


def test_every_slo_alert_has_one_rule_per_window_pair_of_the_workbook_policy_and_no_for():
    pairs = {(a.alert, dict(a.extra_labels)[c.L_LONG_WINDOW], dict(a.extra_labels)[c.L_SHORT_WINDOW],
              a.severity.value) for a in CATALOG.alerts() if c.L_LONG_WINDOW in dict(a.extra_labels)}
    for name in ("TransferAvailabilityBudgetBurn", "PaymentAvailabilityBudgetBurn"):
        assert {p[1:] for p in pairs if p[0] == name} == {
            ("1h", "5m", "critical"), ("6h", "30m", "critical"), ("1d", "2h", "warning"), ("3d", "6h", "warning")}
    burn = [a for a in CATALOG.alerts() if c.L_LONG_WINDOW in dict(a.extra_labels)]
    assert burn and all(a.for_ is None for a in burn)
    page = next(a for a in burn if a.alert == "PaymentAvailabilityBudgetBurn" and dict(a.extra_labels)[c.L_LONG_WINDOW] == "1h")
    assert page.expr == ('slo:burn_rate:ratio_rate1h{slo="payment-availability"} > 14.4\n'
                         'and\nslo:burn_rate:ratio_rate5m{slo="payment-availability"} > 14.4')


def test_burn_rates_error_budgets_and_remaining_budget_are_recorded_per_slo():
    slos = next(f for f in CATALOG.files if f.name == "slos")
    recorded = {(r.record, dict(r.labels)[c.L_SLO]) for g in slos.groups for r in g.rules if isinstance(r, RecordingRule)}
    for slo in ("transfer-availability", "transfer-latency", "login-availability", "payment-availability"):
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
            assert (f"slo:sli_error:ratio_rate{window}", slo) in recorded
            assert (f"slo:burn_rate:ratio_rate{window}", slo) in recorded
        for name in (c.RULE_SLO_OBJECTIVE, c.RULE_SLO_ERROR_BUDGET, c.RULE_SLO_BUDGET_REMAINING):
            assert (name, slo) in recorded


def test_red_and_transaction_rules_are_recorded_with_level_metric_operations_names():
    recorded = {r.record for f in CATALOG.files for g in f.groups for r in g.rules if isinstance(r, RecordingRule)}
    for name in ("service:http_server_requests:rate5m", "service:http_server_errors:ratio_rate5m",
                 "service:http_server_request_duration_seconds:p50_rate5m",
                 "service:http_server_request_duration_seconds:p95_rate5m",
                 "service:http_server_request_duration_seconds:p99_rate5m",
                 "type:transaction_success:ratio_rate5m", "type:transaction_technical_failures:ratio_rate5m",
                 "type:transaction_duration_seconds:p95_rate5m", "type_threshold:slow_transactions:ratio_rate5m"):
        assert name in recorded


def test_every_alert_carries_the_routing_labels_and_the_four_annotations():
    severities = {s.value for s in c.Severity}
    for rule in _rendered_alerts():
        labels, annotations = rule["labels"], rule["annotations"]
        assert {c.L_SEVERITY, c.L_TEAM} <= set(labels), rule["alert"]
        assert labels[c.L_SEVERITY] in severities
        assert list(annotations) == [c.A_SUMMARY, c.A_DESCRIPTION, c.A_RUNBOOK_URL, c.A_DASHBOARD_URL]
        assert annotations[c.A_RUNBOOK_URL] == f"{topology.RUNBOOK_BASE_URL}/{rule['alert']}.md"
        assert annotations[c.A_DASHBOARD_URL].startswith(f"{topology.DASHBOARD_BASE_URL}/")
        assert "$value" in annotations[c.A_DESCRIPTION], f"{rule['alert']}: say how bad (the value)"
        # service: static, or carried by every series of the expression (checked by promtool cases)
        assert c.L_SERVICE in labels or "service" in rule["expr"], rule["alert"]


def test_every_metric_an_expression_reads_is_declared_in_conventions_or_recorded():
    declared = {value.name for value in vars(c).values() if isinstance(value, c.MetricSpec)}
    families = declared | {f"{m.name}_bucket" for m in vars(c).values()
                           if isinstance(m, c.MetricSpec) and m.kind == "histogram"}
    recorded = {r.record for f in CATALOG.files for g in f.groups for r in g.rules if isinstance(r, RecordingRule)}
    external = {"up", "vector", "ALERTS"} | set(c.OTELCOL_METRICS)
    functions = {"sum", "rate", "by", "on", "and", "or", "avg_over_time", "histogram_quantile", "label_replace",
                 "max", "group_left", "increase", "bool"}
    for f in CATALOG.files:
        for g in f.groups:
            for r in g.rules:
                expr = re.sub(r'"[^"]*"|\{[^}]*\}|\[[^]]*\]', "", r.expr)
                expr = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
                for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
                    if word in functions or word.startswith(("slo:", "le")):
                        continue
                    if "_" in word or ":" in word:
                        assert word in families | recorded | external, f"{r.name}: {word} is not a known metric"


def test_the_team_of_a_per_service_alert_is_chosen_by_the_teams_spec():
    alert = next(a for a in CATALOG.alerts() if a.alert == "ServiceErrorRateHigh")
    assert alert.service is None
    assert alert.team == build.team_template(CATALOG.teams)
    assert '"payments"' in alert.team and "core-banking" in alert.team
    assert CATALOG.teams.team_of("payments") == "core-banking"
    assert CATALOG.teams.team_of("something-new") == CATALOG.teams.default_team


# --- validation ---------------------------------------------------------------------------------

GOOD_RULES = """\
version: 1
kind: rules
description: demo
groups:
  - name: demo.alerts
    rules:
      - alert: DemoDown
        expr: up == 0
        for: 1m
        severity: warning
        team: platform
        service: demo
        dashboard: demo
        brief: demo is down
        summary: demo down
        description: value {{ $value }}
        tests:
          - {name: fires, series: {'up{job="demo"}': '0x5'}, at: 3m, fires: [{job: demo}]}
          - {name: quiet, series: {'up{job="demo"}': '1x5'}, at: 3m}
"""


@pytest.mark.parametrize("edit, complaint", [
    (lambda t: t.replace("version: 1", "version: 2"), "version must be 1"),
    (lambda t: t.replace("kind: rules", "kind: rulez"), "kind must be one of"),
    (lambda t: t.replace("severity: warning", "severity: page"), "severity"),
    (lambda t: t.replace("for: 1m", "for: 1 minute"), "for"),
    (lambda t: t.replace("        brief: demo is down\n", ""), "brief"),
    (lambda t: t.replace("          - {name: quiet, series: {'up{job=\"demo\"}': '1x5'}, at: 3m}\n", ""),
     "needs a test case that fires it and one that does not"),
    (lambda t: t.replace("dashboard: demo", "dashboard: demo\n        colour: red"), "colour"),
    (lambda t: t + "  - [", "not valid YAML"),
    (lambda t: t.replace("dashboard: demo", "dashboard: demo\n        flood: true\n        caused_by_ddos: true"),
     "a flood or flood_proof alert cannot be caused_by_ddos"),
])
def test_a_bad_spec_is_refused_with_one_message_naming_the_file_and_field(edit, complaint):
    with pytest.raises(ConfigError, match=re.escape(complaint)) as caught:
        spec.load_text(edit(GOOD_RULES), "demo.yml")
    assert str(caught.value).startswith("demo.yml: ")


def test_an_unknown_team_and_a_duplicate_rule_are_refused(tmp_path):
    directory = tmp_path / "prometheus" / "spec"
    directory.mkdir(parents=True)
    shutil.copy(SPEC_DIR / "teams.yml", directory)
    (directory / "demo.yml").write_text(GOOD_RULES.replace("team: platform", "team: nobody"))
    with pytest.raises(ConfigError, match="team 'nobody' is not in"):
        build.load_catalog(tmp_path)
    (directory / "demo.yml").write_text(GOOD_RULES)
    (directory / "other.yml").write_text(GOOD_RULES)
    with pytest.raises(ConfigError, match="DemoDown is defined in both"):
        build.load_catalog(tmp_path)


@pytest.mark.parametrize("build_rule, complaint", [
    (lambda: RecordingRule("windows_iis_requests_rate5m", "x"), "level:metric:operations"),
    (lambda: RecordingRule("Site:requests:rate5m", "x"), "level:metric:operations"),
    (lambda: RecordingRule("site:requests:rate5m", "  "), "expr is empty"),
    (lambda: AlertRule("iis_down", "up == 0", for_="1m", severity=c.Severity.CRITICAL, team="t",
                       service="s", summary="s", description="d", dashboard="d"), "UpperCamelCase"),
    (lambda: AlertRule("IisDown", "up == 0", for_="1 minute", severity=c.Severity.CRITICAL, team="t",
                       service="s", summary="s", description="d", dashboard="d"), "'1 minute'"),
    (lambda: AlertRule("IisDown", "up == 0", for_="1m", severity="page", team="t",  # type: ignore[arg-type]
                       service="s", summary="s", description="d", dashboard="d"), "critical, warning, info"),
    (lambda: AlertRule("IisDown", "up == 0", for_="1m", severity=c.Severity.CRITICAL, team="t",
                       service="s", summary=" ", description="d", dashboard="d"), "summary is empty"),
    (lambda: AlertRule("IisDown", "up == 0", for_="1m", severity=c.Severity.CRITICAL, team="t",
                       service="s", summary="s", description="d", dashboard="d",
                       extra_labels=(("severity", "info"),)), "'severity'"),
    (lambda: RuleGroup("g", ()), "has no rules"),
    (lambda: RuleGroup("g", (RecordingRule("a:b:c", "1"), RecordingRule("a:b:c", "2"))), "a:b:c is defined twice"),
])
def test_a_rule_that_breaks_a_convention_is_refused_with_a_message_naming_it(build_rule, complaint):
    with pytest.raises(ValueError, match=re.escape(complaint)):
        build_rule()


# --- generation ---------------------------------------------------------------------------------

GOLDEN = """\
# GENERATED by `obslab rules generate` from tests/fixture.yml - DO NOT EDIT.
# Change the spec there (format: prometheus/spec/README.md) and run `obslab rules generate`.
groups:
- name: demo.rules
  rules:
  - record: job:http_requests:rate5m
    expr: sum by (job) (rate(http_requests_total[5m]))
    labels:
      tier: web
- name: demo.alerts
  interval: 30s
  rules:
  - alert: DemoErrorsHigh
    expr: |-
      sum by (job) (rate(http_errors_total[5m]))
        / job:http_requests:rate5m > 0.05
    for: 5m
    labels:
      severity: warning
      team: demo-team
      service: demo
      tier: web
    annotations:
      summary: Job {{ $labels.job }} fails {{ $value | humanizePercentage }} of requests
      description: 'Errors: more than 5 % of requests.'
      runbook_url: http://localhost:8095/runbooks/DemoErrorsHigh.md
      dashboard_url: http://localhost:3000/d/demo
"""


def _demo_groups() -> tuple[RuleGroup, ...]:
    return (
        RuleGroup("demo.rules", (
            RecordingRule("job:http_requests:rate5m", "sum by (job) (rate(http_requests_total[5m]))", (("tier", "web"),)),
        )),
        RuleGroup("demo.alerts", (
            AlertRule("DemoErrorsHigh", "sum by (job) (rate(http_errors_total[5m]))\n  / job:http_requests:rate5m > 0.05",
                      for_="5m", severity=c.Severity.WARNING, team="demo-team", service="demo",
                      summary="Job {{ $labels.job }} fails {{ $value | humanizePercentage }} of requests",
                      description="Errors: more than 5 % of requests.", dashboard="demo",
                      extra_labels=(("tier", "web"),)),
        ), interval="30s"),
    )


def test_the_renderer_writes_groups_in_order_with_prometheus_key_order_and_the_header():
    assert rules.render(_demo_groups(), source="tests/fixture.yml") == GOLDEN


def test_the_fast_profile_scales_for_and_production_keeps_the_spec_values():
    fast = rules.render(_demo_groups(), source="tests/fixture.yml", profile=FAST)
    assert "    for: 30s\n" in fast and "    for: 5m\n" not in fast
    assert rules.render(_demo_groups(), source="tests/fixture.yml", profile=PRODUCTION) == GOLDEN


def test_every_generated_file_is_committed_as_the_spec_renders_it_today():
    generated = CATALOG.generated()
    assert {"prometheus/rules/slos.yml", "prometheus/rules/services.yml", "prometheus/rules/platform.yml",
            "prometheus/rules/iis.yml", build.RUNBOOK_INDEX} <= set(generated)
    for relative, produce in generated.items():
        assert (ROOT / relative).read_text() == produce(), f"{relative} is stale: run `obslab rules generate`"
        assert "DO NOT EDIT" in produce().splitlines()[0]
        assert "obslab rules generate" in produce().splitlines()[0]


def test_rules_generate_check_fails_on_a_stale_file_and_generate_repairs_it(tmp_path, monkeypatch, capsys):
    clone = tmp_path / "repo"
    shutil.copytree(ROOT / "prometheus", clone / "prometheus")
    shutil.copytree(ROOT / "runbooks", clone / "runbooks")
    monkeypatch.setattr(settings, "repo_root", lambda: clone)
    target = clone / "prometheus" / "rules" / "services.yml"
    target.write_text(target.read_text().replace("> 0.05", "> 0.5"))
    assert main(["rules", "generate", "--check"]) == 1
    assert "stale: prometheus/rules/services.yml (run `obslab rules generate`)" in capsys.readouterr().out
    assert main(["rules", "generate"]) == 0
    assert main(["rules", "generate", "--check"]) == 0
    assert generate.stale_files(clone) == []


def test_rules_list_prints_every_alert_with_its_severity_and_team(capsys):
    assert main(["rules", "list"]) == 0
    out = capsys.readouterr().out
    for name in CATALOG.alert_names():
        assert name in out
    assert re.search(r"PaymentAvailabilityBudgetBurn\s+critical\s+core-banking\s+payments\s+burn 1h", out)


def test_only_generated_rule_files_match_the_glob_prometheus_loads():
    on_disk = {str(path.relative_to(ROOT)) for path in RULES_DIR.glob("*.yml")}
    assert on_disk == set(CATALOG.rule_files())


# --- promtool -----------------------------------------------------------------------------------

@pytest.mark.prometheus
def test_promtool_accepts_every_rule_file_in_both_profiles(tmp_path):
    files = sorted(RULES_DIR.glob("*.yml"))
    for relative, rule_file in CATALOG.rule_files().items():
        fast = tmp_path / Path(relative).name
        fast.write_text(rule_file.render(FAST))
        files.append(fast)
    result = subprocess.run([required_binary("promtool"), "check", "rules", *map(str, files)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _test_files() -> list[Path]:
    return sorted((RULES_DIR / "tests").glob("*.yml")) + sorted((RULES_DIR / "tests" / "generated").glob("*.yml"))


@pytest.mark.prometheus
@pytest.mark.parametrize("path", _test_files(), ids=lambda p: p.name)
def test_promtool_unit_tests_of_the_rules_pass(path):
    result = subprocess.run([required_binary("promtool"), "test", "rules", path.name], capture_output=True, text=True,
                            cwd=path.parent, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_and_one_where_it_never_fires():
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in (RULES_DIR / "tests" / "generated").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("promql_expr_test", []):
                names = re.findall(r'ALERTS\{alertname="(\w+)"', check["expr"])
                if check.get("exp_samples"):
                    fires.update(names)
                elif check["expr"].startswith("max_over_time(ALERTS"):
                    quiet.update(names)
    everything = set(CATALOG.alert_names())
    assert everything - fires == set(), "no promtool case fires these"
    assert everything - quiet - {"Watchdog"} == set(), "no promtool case shows these never firing"


def test_every_slo_window_pair_has_a_firing_a_reset_and_a_quiet_case():
    for window in ("1h", "6h", "1d", "3d"):
        cases = yaml.safe_load((RULES_DIR / "tests" / "generated" / f"slos_{window}_test.yml").read_text())["tests"]
        for slo in ("transfer-availability", "transfer-latency", "login-availability", "payment-availability"):
            names = [case["name"] for case in cases if case["name"].startswith(f"{slo} {window}/")]
            assert len(names) == 3, names
            assert any("fires" in n for n in names) and any("stopped" in n for n in names) \
                and any("quiet" in n for n in names)


@pytest.mark.parametrize("duration, fast", [("1w", "60480s"), ("90s", "9s"), ("1h30m", "540s"), ("1y", "3153600s")])
def test_every_duration_the_spec_accepts_renders_under_the_fast_profile(duration, fast):
    """One parser: a duration valid in the spec (Prometheus' syntax) is one the fast profile can
    scale, where `1w` used to pass validation and then fail to render."""
    from obslab.profiles import FAST

    assert settings.PROMETHEUS_DURATION.match(duration)
    assert FAST.scale_ranges(f"rate(x[{duration}])") == f"rate(x[{fast}])"


def test_a_lab_on_other_ports_renders_its_own_runbook_base_into_every_alert():
    """Passed to the renderer, not patched into its text afterwards."""
    from obslab.profiles import FAST

    base = "http://127.0.0.1:18095/runbooks"
    urls = []
    for rule_file in rules.rule_files(FAST).values():
        text = rule_file.render(FAST, runbook_base=base)
        assert topology.RUNBOOK_BASE_URL not in text
        urls += [rule["annotations"][c.A_RUNBOOK_URL] for group in yaml.safe_load(text)["groups"]
                 for rule in group["rules"] if "alert" in rule]
    assert urls and all(url == f"{base}/{url.rsplit('/', 1)[1]}" for url in urls)


def test_the_spec_names_the_alert_roles_code_depends_on():
    """Alertmanager's DDoS inhibition, the dead-man route and the drills read these from the spec."""
    assert CATALOG.floods() == ["DDoSAttackSuspected", "GatewayFloodSuspected"]
    assert CATALOG.flood_proof() == ["BankingServiceDown"]
    assert CATALOG.watchdog() == "Watchdog"
    assert CATALOG.spec_of("MLDetectorStale") == "ml" and CATALOG.spec_of("Watchdog") == "platform"
