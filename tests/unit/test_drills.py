"""The drill format and catalogue: golden good and bad files, the repository's catalogue, the
CLI's offline commands (list, show, coverage), and the runner's bookkeeping without a lab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from obslab import conventions as c
from obslab.cli import main
from obslab.drills.catalog import (
    NOT_DRILLABLE,
    _check,
    floor_seconds,
    load_drills,
    receivers_for,
)
from obslab.drills.model import CAUSES, load_file
from obslab.profiles import FAST, PRODUCTION
from obslab.rules import load_catalog
from obslab.settings import ConfigError, repo_root

FIXTURES = Path(__file__).parent / "drill_fixtures"
RULES = load_catalog()
RUNBOOKS = repo_root() / "runbooks"
CATALOG = load_drills()


def _load(path: Path):
    drill = load_file(path)
    _check(drill, str(path), RULES, RUNBOOKS)
    return drill


@pytest.mark.parametrize("path", sorted((FIXTURES / "good").glob("*.yml")), ids=lambda p: p.stem)
def test_a_good_drill_loads(path):
    drill = _load(path)
    assert drill.name == path.stem and drill.expect


@pytest.mark.parametrize("path", sorted((FIXTURES / "bad").glob("*.yml")), ids=lambda p: p.stem)
def test_a_bad_drill_is_refused_with_one_message_naming_the_file_and_the_field(path):
    """Each bad file's first line is the message it must produce (after the file name)."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{path.name}: the first line must say '# error: <message>'"
    with pytest.raises(ConfigError) as caught:
        _load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert first.removeprefix("# error: ") in message, message
    assert "\n" not in message


def test_the_fixture_folders_cover_every_kind_of_refusal():
    """A refusal without a golden file is untested; keep the folder honest."""
    names = {p.stem for p in (FIXTURES / "bad").glob("*.yml")}
    assert {"unknown-alert", "unknown-kind", "unknown-target", "unknown-receiver", "wrong-receiver",
            "unknown-runbook", "query-not-in-runbook", "unknown-cause"} <= names


def test_a_folder_with_a_bad_drill_fails_to_load_as_a_whole(tmp_path):
    (tmp_path / "minimal.yml").write_text((FIXTURES / "good" / "minimal.yml").read_text())
    (tmp_path / "unknown-alert.yml").write_text((FIXTURES / "bad" / "unknown-alert.yml").read_text())
    with pytest.raises(ConfigError, match="unknown-alert.yml: expect.0.alert"):
        load_drills(tmp_path)


def test_an_alert_removed_from_the_spec_makes_the_drills_that_expect_it_fail_to_load(tmp_path):
    """Checked against the spec at load time: a temporary spec without the payment SLO."""
    import shutil

    from obslab.rules.build import _load

    spec = tmp_path / "prometheus" / "spec"
    shutil.copytree(repo_root() / "prometheus" / "spec", spec)
    text = (spec / "slos.yml").read_text()
    start = text.index("  - name: payment-availability")
    end = text.find("\n  - name: ", start + 10)
    (spec / "slos.yml").write_text(text[:start] + (text[end + 1:] if end != -1 else ""))
    without = _load(spec)
    assert "PaymentAvailabilityBudgetBurn" not in without.alert_names()
    with pytest.raises(ConfigError, match="unknown alert 'PaymentAvailabilityBudgetBurn'"):
        load_drills(rules=without)


# --- the catalogue ----------------------------------------------------------------------------------

def test_every_fault_kind_has_a_drill():
    coverage = CATALOG.coverage()
    assert all(coverage["fault_kinds"][kind.value] for kind in c.FaultKind), coverage["fault_kinds"]


def test_every_alert_is_drilled_or_the_coverage_says_why_not():
    coverage = CATALOG.coverage()["alerts"]
    for alert, drills in coverage.items():
        assert drills or alert in NOT_DRILLABLE, f"{alert}: no drill expects it and NOT_DRILLABLE gives no reason"
    for alert in NOT_DRILLABLE:
        assert alert in coverage, f"NOT_DRILLABLE names {alert}, which the spec does not have"


def test_the_catalogue_has_the_realistic_scenarios():
    names = set(CATALOG.names())
    assert {"slow-database", "card-processor-slowdown", "ddos-at-peak", "iis-app-pool-crash", "telemetry-dark",
            "gateway-down-blinds-detector"} <= names
    ddos = CATALOG.get("ddos-at-peak")
    assert {e.receiver for e in ddos.expect} == {c.RECEIVER_PAGER}
    assert {q.alert for q in ddos.quiet} >= {"PaymentAvailabilityBudgetBurn", "TransferAvailabilityBudgetBurn"}
    assert all(e.absent and e.receiver == c.RECEIVER_DEADMAN for e in CATALOG.get("telemetry-dark").expect)


def test_every_cause_of_the_catalogue_is_in_the_vocabulary_and_every_drill_has_a_runbook_query():
    for drill in CATALOG.drills:
        assert drill.cause in CAUSES
        blind = any(step.target == c.PROMETHEUS for step in drill.timeline)   # nothing could answer a query
        assert drill.diagnose or blind, f"{drill.name}: a drill checks that its runbook leads to the cause"


def test_receivers_follow_the_route_tree():
    assert receivers_for(RULES, "PaymentAvailabilityBudgetBurn", {"long_window": "1h"}) == {c.RECEIVER_PAGER}
    assert receivers_for(RULES, "PaymentAvailabilityBudgetBurn", {"long_window": "1d"}) == {"chat-core-banking"}
    assert receivers_for(RULES, "ServiceLatencyHigh", {"service": "fraud"}) == {"chat-fraud"}
    assert receivers_for(RULES, "Watchdog", {}) == {c.RECEIVER_DEADMAN}


def test_the_floor_adds_scrape_evaluation_condition_for_and_group_wait():
    drill = CATALOG.get("accounts-latency")
    expect = drill.expect[0]            # ServiceLatencyHigh, for 10m; 15 s condition (fast: 2 s)
    assert floor_seconds(RULES, expect, FAST) == 2 + 2 * 2 + 2 + 60 + 2
    assert floor_seconds(RULES, expect, PRODUCTION) == 10 + 15 * 2 + 15 + 600 + 30


# --- the offline commands ---------------------------------------------------------------------------

def test_drill_list_json_has_the_documented_shape(capsys):
    assert main(["drill", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == CATALOG.names()
    first = rows[0]
    assert set(first) == {"name", "title", "faults", "expect"}
    assert set(first["faults"][0]) == {"kind", "target"}
    assert all(isinstance(name, str) for name in first["expect"])


def test_drill_show_prints_the_story_timeline_expectations_and_runbooks(capsys):
    assert main(["drill", "show", "slow-database"]) == 0
    out = capsys.readouterr().out
    for text in ("TransferLatencyBudgetBurn", "db_slow on accounts", "runbooks/TransferLatencyBudgetBurn.md",
                 "Must stay quiet", "floor"):
        assert text in out


def test_drill_show_of_an_unknown_drill_says_how_to_list_them(capsys):
    assert main(["drill", "show", "no-such-drill"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("obslab: error: no drill named 'no-such-drill'") and "obslab drill list" in err


def test_drill_coverage_json_lists_every_alert_fault_kind_and_runbook(capsys):
    assert main(["drill", "coverage", "--json"]) == 0
    coverage = json.loads(capsys.readouterr().out)
    assert set(coverage["alerts"]) == set(RULES.alert_names())
    assert set(coverage["fault_kinds"]) >= {k.value for k in c.FaultKind}
    assert coverage["runbooks"]["TransferLatencyBudgetBurn"] == ["slow-database"]
    assert all(isinstance(gap, str) for gap in coverage["gaps"])


def test_drill_run_without_a_lab_says_how_to_start_one(tmp_path, capsys, monkeypatch):
    from tests.support import free_port

    port = free_port()   # nothing listens there
    for name in ("PROMETHEUS", "ALERTMANAGER", "ALERT_RECEIVER", "FAULT_INJECTOR"):
        monkeypatch.setenv(f"OBSLAB_{name}_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OBSLAB_CONTROL_TOKEN", "x" * 40)
    assert main(["drill", "run", "fraud-crash", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("obslab: error:") and "obslab up --detach --profile fast" in err


def test_drill_run_needs_a_name_or_all(tmp_path, capsys):
    assert main(["drill", "run", "--data-dir", str(tmp_path)]) == 2
    assert "name one drill, or --all" in capsys.readouterr().err
