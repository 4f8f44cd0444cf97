"""The spec folder -> rule files, promtool test files and the runbook index.

Steps, each small: load and validate every ``prometheus/spec/*.yml`` (:mod:`obslab.rules.spec`),
turn rule specs into typed rules (:mod:`obslab.rules.model`, which enforces the naming and
labelling conventions), expand SLOs (:mod:`obslab.rules.slo`), and write test cases
(:mod:`obslab.rules.promtool_tests`).

>>> catalog = load_catalog()
>>> "prometheus/rules/slos.yml" in catalog.rule_files()
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from obslab import conventions as c
from obslab import settings
from obslab.profiles import PRODUCTION, Profile
from obslab.rules import promtool_tests, slo
from obslab.rules.model import AlertRule, RecordingRule, RuleGroup
from obslab.rules.render import RuleFile
from obslab.rules.spec import (
    TEAM_BY_SERVICE,
    AlertSpec,
    RulesSpec,
    SloSpec,
    SlosSpec,
    TeamsSpec,
    load_file,
)
from obslab.settings import ConfigError

SPEC_DIR = "prometheus/spec"
RULES_DIR = "prometheus/rules"
TESTS_DIR = "prometheus/rules/tests/generated"
RUNBOOK_INDEX = "runbooks/README.md"
TEAMS_FILE = "teams"


def team_template(teams: TeamsSpec) -> str:
    """A label template choosing the team that owns ``$labels.service`` (default team otherwise)."""
    branches = []
    for team, spec in teams.teams.items():
        if spec.services:
            names = " ".join(f'"{service}"' for service in spec.services)
            branches.append(f"if eq $labels.{c.L_SERVICE} {names} }}}}{team}")
    if not branches:
        return teams.default_team
    return "{{ " + "{{ else ".join(branches) + f"{{{{ else }}}}{teams.default_team}{{{{ end }}}}"


@dataclass(frozen=True)
class SpecFile:
    """One spec file and everything generated from it."""

    name: str                               # stem: prometheus/spec/<name>.yml
    groups: tuple[RuleGroup, ...]
    cases: dict[str, list[dict]]            # test file stem -> promtool cases
    evaluation_intervals: dict[str, str]    # test file stem -> its evaluation interval
    ddos_caused: frozenset[str] = field(default=frozenset())
    index_rows: tuple[tuple[str, str, str, str], ...] = ()   # alert, brief, team, service
    # kind slos: the spec, whose groups depend on the profile beyond `for:` (the windows).
    slos: SlosSpec | None = None
    # kind rules: the spec's alert roles (AlertSpec.flood, flood_proof, always_fires).
    floods: frozenset[str] = field(default=frozenset())
    flood_proof: frozenset[str] = field(default=frozenset())
    always_firing: frozenset[str] = field(default=frozenset())

    @property
    def spec_path(self) -> str:
        return f"{SPEC_DIR}/{self.name}.yml"

    @property
    def rule_path(self) -> str:
        return f"{RULES_DIR}/{self.name}.yml"

    def rule_file(self, profile: Profile = PRODUCTION) -> RuleFile:
        groups = self.groups if self.slos is None else slo.groups(self.slos, profile)
        return RuleFile(self.spec_path, groups)

    def test_files(self) -> dict[str, str]:
        return {
            f"{TESTS_DIR}/{stem}_test.yml": promtool_tests.test_file(
                [f"../../{self.name}.yml"], self.groups, cases, source=self.spec_path,
                evaluation_interval=self.evaluation_intervals[stem])
            for stem, cases in self.cases.items()
        }


def _alert(spec: AlertSpec, teams: TeamsSpec, source: str) -> AlertRule:
    if spec.team == TEAM_BY_SERVICE:
        team = team_template(teams)
    elif spec.team in teams.teams:
        team = spec.team
    else:
        raise ConfigError(f"{source}: alert {spec.alert}: team {spec.team!r} is not in "
                          f"{SPEC_DIR}/{TEAMS_FILE}.yml (or write {TEAM_BY_SERVICE})")
    try:
        return AlertRule(spec.alert, spec.expr.strip(), for_=spec.for_, severity=spec.severity, team=team,
                         service=spec.service, summary=spec.summary.strip(),
                         description=" ".join(spec.description.split()), dashboard=spec.dashboard,
                         extra_labels=tuple(spec.labels.items()))
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _rules_file(name: str, spec: RulesSpec, teams: TeamsSpec, source: str) -> SpecFile:
    groups: list[RuleGroup] = []
    cases: list[dict] = []
    ddos: set[str] = set()
    roles: dict[str, set[str]] = {"flood": set(), "flood_proof": set(), "always_fires": set()}
    index: list[tuple[str, str, str, str]] = []
    for group in spec.groups:
        rules: list = []
        for rule in group.rules:
            if isinstance(rule, AlertSpec):
                alert = _alert(rule, teams, source)
                rules.append(alert)
                try:
                    cases += promtool_tests.alert_cases(rule, alert, teams.team_of)
                except ValueError as exc:
                    raise ConfigError(f"{source}: {exc}") from None
                if rule.caused_by_ddos:
                    ddos.add(rule.alert)
                for role, members in roles.items():
                    if getattr(rule, role):
                        members.add(rule.alert)
                team = "owner of the service" if rule.team == TEAM_BY_SERVICE else rule.team
                index.append((rule.alert, " ".join(rule.brief.split()), team, rule.service or "from the series"))
            else:
                try:
                    rules.append(RecordingRule(rule.record, rule.expr.strip(), tuple(rule.labels.items())))
                except ValueError as exc:
                    raise ConfigError(f"{source}: {exc}") from None
        try:
            groups.append(RuleGroup(group.name, tuple(rules), group.interval, scale_ranges=True))
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return SpecFile(name, tuple(groups), {name: cases}, {name: "1m"}, frozenset(ddos), tuple(index),
                    floods=frozenset(roles["flood"]), flood_proof=frozenset(roles["flood_proof"]),
                    always_firing=frozenset(roles["always_fires"]))


def _slos_file(name: str, spec: SlosSpec, teams: TeamsSpec, source: str) -> SpecFile:
    for objective in spec.slos:
        if objective.team not in teams.teams:
            raise ConfigError(f"{source}: slo {objective.name}: team {objective.team!r} is not in "
                              f"{SPEC_DIR}/{TEAMS_FILE}.yml")
    try:
        groups = slo.groups(spec)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    cases: dict[str, list[dict]] = {}
    intervals: dict[str, str] = {}
    for window in spec.burn_windows:
        stem = f"{name}_{window.long}"
        intervals[stem] = promtool_tests.pair_interval(window)
        cases[stem] = [case for objective in spec.slos for case in promtool_tests.slo_cases(spec, objective, window)]
    cases[f"{name}_budget"] = [case for objective in spec.slos for case in (
        promtool_tests.budget_case(spec, objective), promtool_tests.clean_case(spec, objective))]
    intervals[f"{name}_budget"] = "1m"
    ddos = frozenset(o.alert for o in spec.slos if o.caused_by_ddos)
    policy = "; ".join(f"{w.severity.value} at {w.factor:g}x over {w.long}+{w.short}" for w in spec.burn_windows)
    index = tuple((o.alert, f"{o.title}: the {o.objective:g} % SLO's error budget burns too fast ({policy})",
                   o.team, o.service) for o in spec.slos)
    return SpecFile(name, groups, cases, intervals, ddos, index, spec)


@dataclass(frozen=True)
class Catalog:
    """Every spec file, compiled."""

    teams: TeamsSpec
    files: tuple[SpecFile, ...]

    def rule_files(self, profile: Profile = PRODUCTION) -> dict[str, RuleFile]:
        return {f.rule_path: f.rule_file(profile) for f in self.files}

    def alerts(self) -> list[AlertRule]:
        """Every alert rule; an SLO's alert appears once per window pair (same name)."""
        return [alert for f in self.files for group in f.groups for alert in group.alerts()]

    def recorded_names(self) -> set[str]:
        """Every recording rule's name."""
        return {rule.name for f in self.files for group in f.groups for rule in group.rules
                if isinstance(rule, RecordingRule)}

    def alert_names(self) -> list[str]:
        return list(dict.fromkeys(alert.alert for alert in self.alerts()))

    def slo(self, name: str) -> tuple[SlosSpec, SloSpec]:
        """The SLO called ``name`` and the spec (policy, period) it belongs to."""
        for f in self.files:
            for objective in f.slos.slos if f.slos else ():
                if objective.name == name:
                    return f.slos, objective
        raise KeyError(name)

    def ddos_caused(self) -> list[str]:
        """Alerts a gateway flood causes downstream (inhibited while a DDoS alert fires)."""
        return sorted(name for f in self.files for name in f.ddos_caused)

    def floods(self) -> list[str]:
        """The DDoS alerts: verdicts that the gateway is flooded, which inhibit ddos_caused()."""
        return sorted(name for f in self.files for name in f.floods)

    def flood_proof(self) -> list[str]:
        """Alerts a flood must never hide."""
        return sorted(name for f in self.files for name in f.flood_proof)

    def watchdog(self) -> str:
        """The always-firing alert whose absence at the dead-man receiver means the alert path broke."""
        names = sorted(name for f in self.files for name in f.always_firing)
        if len(names) != 1:
            raise ConfigError(f"{SPEC_DIR}: exactly one alert must be always_fires (the Watchdog), found {names}")
        return names[0]

    def spec_of(self, alert: str) -> str:
        """The stem of the spec file that defines ``alert`` (prometheus/spec/<stem>.yml)."""
        for f in self.files:
            if any(rule.name == alert for group in f.groups for rule in group.rules):
                return f.name
        raise KeyError(alert)

    def generated(self, profile: Profile = PRODUCTION) -> dict[str, Callable[[], str]]:
        """Repository-relative path -> its content, for every file the spec generates."""
        out: dict[str, Callable[[], str]] = {}
        for f in self.files:
            out[f.rule_path] = lambda f=f: f.rule_file(profile).render(profile)
            for path, text in f.test_files().items():
                out[path] = lambda text=text: text
        from obslab.rules import runbook_index
        out[RUNBOOK_INDEX] = lambda: runbook_index.render(self)
        return out


def _check_unique(files: list[SpecFile]) -> None:
    seen: dict[str, str] = {}
    for f in files:
        names = {rule.name for group in f.groups for rule in group.rules}
        for name in names:
            if name in seen and seen[name] != f.name:
                raise ConfigError(f"{name} is defined in both {SPEC_DIR}/{seen[name]}.yml and {f.spec_path}")
            seen[name] = f.name


def load_catalog(root: Path | None = None) -> Catalog:
    directory = (root or settings.repo_root()) / SPEC_DIR
    return _load(directory)


@cache
def _load(directory: Path) -> Catalog:
    paths = sorted(directory.glob("*.yml"))
    teams_path = directory / f"{TEAMS_FILE}.yml"
    if not teams_path.exists():
        raise ConfigError(f"{teams_path} is missing: the spec needs its teams")
    teams = load_file(teams_path)
    if not isinstance(teams, TeamsSpec):
        raise ConfigError(f"{teams_path}: kind must be teams")
    files: list[SpecFile] = []
    for path in paths:
        if path == teams_path:
            continue
        document = load_file(path)
        source = f"{SPEC_DIR}/{path.name}"
        if isinstance(document, RulesSpec):
            files.append(_rules_file(path.stem, document, teams, source))
        elif isinstance(document, SlosSpec):
            files.append(_slos_file(path.stem, document, teams, source))
        else:
            raise ConfigError(f"{source}: only {TEAMS_FILE}.yml may be kind teams")
    _check_unique(files)
    return Catalog(teams, tuple(files))
