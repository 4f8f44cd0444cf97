"""The drill catalogue: every file of ``drills/``, checked against the lab it runs on.

A drill may only name what exists: alerts of the rule spec, receivers Alertmanager routes to,
runbook pages and the queries in their Diagnosis sections. An expected receiver must be the one
Alertmanager's route tree picks for the alert's severity and team, so a drill cannot pass by
expecting a page where the lab sends a ticket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from obslab import conventions as c
from obslab import settings
from obslab.drills.model import Drill, Expect, load_file, timing_seconds
from obslab.profiles import Profile
from obslab.rules import load_catalog
from obslab.rules.build import Catalog
from obslab.rules.model import AlertRule
from obslab.settings import ConfigError, parse_duration

DRILLS_DIR = "drills"
RUNBOOKS_DIR = "runbooks"
# Alerts no drill can exercise, and why (the coverage report shows the reason instead of a gap).
NOT_DRILLABLE: dict[str, str] = {
    "Watchdog": "always firing by design; the telemetry-dark drill checks its absence at the dead-man receiver",
    "DatabaseErrorsHigh": "no fault makes a database raise errors: db_slow delays statements and SQLite's 30 s "
                          "busy timeout absorbs the waits (slow-database drills the slowness instead)",
    "MetricOutsideBaseline": "fires only after the baseliner has learned bands (15 minutes of history in "
                                     "the fast profile) and then 15 minutes (fast: 90 s) outside them; drills "
                                     "tolerate it, none can rely on it in a lab younger than that",
    "TransactionPerformanceScoreLow": "a ticket that its own service's SLO page inhibits whenever failures pull "
                                      "the score down, so a failure drill never notifies it; latency alone "
                                      "reaches it only at 3.3x the objective (card-processor-slowdown holds "
                                      "1.3x); promtool cases fire it and the ML end-to-end test scores a live lab",
}
# The spec file of the ML detectors' alerts: their inputs are scraped at the ML services' interval.
ML_SPEC = "ml"
_RECORDED = re.compile(r"\b[a-z_]*:[a-z][a-z0-9_]*:[a-z0-9_]+\b")


# --- runbooks ---------------------------------------------------------------------------------

def _section(markdown: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}[ \t]*\n(.*?)(?=^## |\Z)", markdown, re.S | re.M)
    return match.group(1) if match else ""


def _normal(query: str) -> str:
    return " ".join(query.split())


def diagnosis_queries(runbooks_dir: Path, alert: str) -> list[str]:
    """The ```promql blocks of a runbook's Diagnosis section, whitespace-normalised."""
    path = runbooks_dir / f"{alert}.md"
    text = path.read_text() if path.exists() else ""
    blocks = re.findall(r"^```promql[ \t]*\n(.*?)^```[ \t]*$", _section(text, "Diagnosis"), re.S | re.M)
    return [_normal(block) for block in blocks]


# --- routing ----------------------------------------------------------------------------------

def matching_rules(catalog: Catalog, alert: str, labels: dict[str, str]) -> list[AlertRule]:
    """The alert's rules whose fixed labels agree with ``labels`` (an SLO alert has one per window pair)."""
    rules = [rule for rule in catalog.alerts() if rule.alert == alert]
    agreeing = [rule for rule in rules
                if all(labels.get(k, v) == v for k, v in rule.labels().items() if "{{" not in v)]
    return agreeing or rules


def receivers_for(catalog: Catalog, alert: str, labels: dict[str, str]) -> set[str]:
    """Where Alertmanager's route tree sends the alert (obslab/generators/amconfig.py): the Watchdog to the
    dead-man receiver, critical to the pager, warning to the owning team's chat, info nowhere."""
    out: set[str] = set()
    for rule in matching_rules(catalog, alert, labels):
        if rule.alert == catalog.watchdog():
            out.add(c.RECEIVER_DEADMAN)
        elif rule.severity is c.Severity.CRITICAL:
            out.add(c.RECEIVER_PAGER)
        elif rule.severity is c.Severity.WARNING:
            if "{{" not in rule.team:
                out.add(c.chat_receiver(rule.team))
            elif c.L_SERVICE in labels:
                out.add(c.chat_receiver(catalog.teams.team_of(labels[c.L_SERVICE])))
            else:
                out.update(c.chat_receiver(team) for team in catalog.teams.teams)
        else:
            out.add(c.RECEIVER_BLACKHOLE)
    return out


def all_receivers(catalog: Catalog) -> list[str]:
    return [c.RECEIVER_PAGER, c.RECEIVER_DEADMAN, c.RECEIVER_BLACKHOLE,
            *(c.chat_receiver(team) for team in catalog.teams.teams)]


# --- floors -----------------------------------------------------------------------------------

def floor_seconds(catalog: Catalog, expect: Expect, profile: Profile) -> float:
    """The theoretical time-to-detect for one expectation under ``profile``: scrape +
    evaluation per dependent group + condition + ``for`` + group_wait (the fastest of the
    alert's matching rules). An SLO burn's condition comes from its window and budget."""
    best = float("inf")
    for rule in matching_rules(catalog, expect.alert, expect.labels):
        condition = timing_seconds(expect.condition, profile)
        slo_name = rule.labels().get(c.L_SLO)
        if slo_name and condition == 0:
            from obslab.rules.slo import burn_condition_seconds

            policy, slo = catalog.slo(slo_name)
            window = next(w for w in policy.burn_windows if w.long == rule.labels()[c.L_LONG_WINDOW])
            condition = burn_condition_seconds(policy, slo, window, profile)
        if "windows_" in rule.expr:
            scrape = profile.scrape_iis_s
        elif catalog.spec_of(rule.alert) == ML_SPEC:
            scrape = profile.scrape_ml_s + profile.ml_evaluation_s
        else:
            scrape = profile.scrape_banking_s
        dependent = 1 if _RECORDED.search(rule.expr) else 0
        best = min(best, profile.detection_floor(condition_s=condition, for_=rule.for_,
                                                 dependent_groups=dependent, scrape_s=scrape))
    return best


# --- the catalogue ----------------------------------------------------------------------------

@dataclass(frozen=True)
class DrillCatalog:
    drills: tuple[Drill, ...]
    rules: Catalog
    runbooks_dir: Path

    def names(self) -> list[str]:
        return [d.name for d in self.drills]

    def get(self, name: str) -> Drill:
        for drill in self.drills:
            if drill.name == name:
                return drill
        raise ConfigError(f"no drill named {name!r}; `obslab drill list` shows them: {', '.join(self.names())}")

    def coverage(self) -> dict[str, dict[str, list[str]]]:
        """Which drills exercise each alert (expected to fire), fault kind and runbook."""
        alerts = {name: [] for name in self.rules.alert_names()}
        kinds: dict[str, list[str]] = {kind.value: [] for kind in c.FaultKind}
        runbooks = {name: [] for name in self.rules.alert_names()}
        for drill in self.drills:
            for name in dict.fromkeys(e.alert for e in drill.expect):
                alerts[name].append(drill.name)
            for kind in drill.fault_kinds():
                kinds.setdefault(kind, []).append(drill.name)
            for name in drill.runbooks():
                runbooks[name].append(drill.name)
        return {"alerts": alerts, "fault_kinds": kinds, "runbooks": runbooks}

    def gaps(self) -> list[str]:
        """What no drill covers, each with the reason when one is known."""
        out = []
        coverage = self.coverage()
        for what, table in (("alert", coverage["alerts"]), ("fault kind", coverage["fault_kinds"])):
            for name, drills in table.items():
                if not drills:
                    why = NOT_DRILLABLE.get(name)
                    out.append(f"{what} {name}: " + (f"not drilled ({why})" if why else "no drill exercises it"))
        return out


def _check(drill: Drill, source: str, rules: Catalog, runbooks_dir: Path) -> None:
    def fail(where: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: {where}: {message}")

    known = set(rules.alert_names())
    for field_name in ("expect", "quiet", "resolve"):
        for i, item in enumerate(getattr(drill, field_name)):
            if item.alert not in known:
                raise fail(f"{field_name}.{i}.alert", f"unknown alert {item.alert!r}; the rule spec has: "
                                                      f"{', '.join(sorted(known))}")
    for i, (name, _labels) in enumerate(drill.tolerated()):
        if name not in known:
            raise fail(f"tolerate.{i}", f"unknown alert {name!r}")
    receivers = all_receivers(rules)
    for i, expect in enumerate(drill.expect):
        if expect.receiver not in receivers:
            raise fail(f"expect.{i}.receiver", f"unknown receiver {expect.receiver!r}; Alertmanager routes to: "
                                               f"{', '.join(receivers)}")
        routed = receivers_for(rules, expect.alert, expect.labels)
        if expect.receiver not in routed:
            raise fail(f"expect.{i}.receiver", f"{expect.alert} with labels {expect.labels} is routed to "
                                               f"{' or '.join(sorted(routed))}, not {expect.receiver}")
        if not (runbooks_dir / f"{expect.alert}.md").exists():
            raise fail(f"expect.{i}.alert", f"{expect.alert} has no runbook ({runbooks_dir}/{expect.alert}.md)")
    expected = {e.alert for e in drill.expect}
    for i, quiet in enumerate(drill.quiet):
        if quiet.alert in expected and not quiet.labels:
            raise fail(f"quiet.{i}.alert", f"{quiet.alert} is both expected and quiet; give the quiet one labels")
    for i, diagnose in enumerate(drill.diagnose):
        path = runbooks_dir / f"{diagnose.runbook}.md"
        if not path.exists():
            raise fail(f"diagnose.{i}.runbook", f"no runbook {diagnose.runbook!r} ({path} does not exist)")
        if " ".join(diagnose.query.split()) not in diagnosis_queries(runbooks_dir, diagnose.runbook):
            raise fail(f"diagnose.{i}.query", f"not one of the ```promql queries in the Diagnosis section of "
                                              f"{path.name}; copy it from there")
    for i, step in enumerate(drill.timeline):
        for name, value in (("start", step.start), ("duration", step.duration)):
            for profile_name in ("production", "fast"):
                text = value if isinstance(value, str) else getattr(value, profile_name)
                if name == "duration" and parse_duration(text, allow_zero=True) < 1:
                    raise fail(f"timeline.{i}.duration", "a fault lasts at least 1 s")


def load_drills(directory: Path | None = None, *, rules: Catalog | None = None,
                runbooks_dir: Path | None = None) -> DrillCatalog:
    """Every ``*.yml`` of ``directory`` (default: the repository's ``drills/``), fully checked."""
    root = settings.repo_root()
    directory = directory or root / DRILLS_DIR
    rules = rules or load_catalog()
    runbooks_dir = runbooks_dir or root / RUNBOOKS_DIR
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a folder of drills")
    drills = []
    for path in sorted(directory.glob("*.yml")):
        drill = load_file(path)
        _check(drill, str(path), rules, runbooks_dir)
        drills.append(drill)
    if not drills:
        raise ConfigError(f"{directory} holds no drills (*.yml)")
    return DrillCatalog(tuple(drills), rules, runbooks_dir)
