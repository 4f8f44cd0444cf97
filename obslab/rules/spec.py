"""The alerting spec: versioned YAML files under ``prometheus/spec/``, validated on load.

One spec file becomes one rule file (``prometheus/spec/<name>.yml`` ->
``prometheus/rules/<name>.yml``) and one generated ``promtool`` test file. Three kinds exist:

* ``kind: rules`` - groups of recording and alert rules written out as PromQL, each alert with
  the test cases that make it fire and keep it quiet;
* ``kind: slos`` - service level objectives, expanded into error-ratio, burn-rate and
  error-budget recording rules and multiwindow multi-burn-rate alerts (:mod:`obslab.rules.slo`);
* ``kind: teams`` - who owns which service (the ``team`` label and Alertmanager's routes).

Every field is checked here, with errors that name the file and the field, so a typo fails
``obslab rules generate`` instead of producing a rule that never fires.

>>> spec = load_text("version: 1\\nkind: teams\\ndefault_team: platform\\n"
...                  "teams: {platform: {services: [notifications]}}", "teams.yml")
>>> spec.team_of("notifications"), spec.team_of("anything-else")
('platform', 'platform')
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from obslab import conventions as c
from obslab.settings import PROMETHEUS_DURATION, ConfigError

SPEC_VERSION = 1
_SLUG = re.compile(r"^[a-z][a-z0-9-]*$")
# The value a spec gives ``team`` to mean "the team that owns the alert's ``service`` label".
TEAM_BY_SERVICE = "by_service"


Duration = Annotated[str, Field(pattern=PROMETHEUS_DURATION.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- kind: rules ------------------------------------------------------------------------------

class AlertTestSpec(_Strict):
    """One ``promtool test rules`` case: input series, a time, the alerts expected then.

    ``fires`` lists the alerts expected at ``at``, each by the labels its series carry (the
    routing labels and the alert's own labels are added by the generator); an empty list means
    the alert must be quiet, and the generated case also asserts it never fired during the run.
    """

    name: str
    interval: Duration = "1m"
    series: dict[str, str]
    at: Duration
    fires: list[dict[str, str]] = Field(default_factory=list)

    @field_validator("series")
    @classmethod
    def _some_series(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("a test case needs at least one input series")
        return value


class RecordSpec(_Strict):
    record: str
    expr: str
    labels: dict[str, str] = Field(default_factory=dict)


class AlertSpec(_Strict):
    alert: str
    expr: str
    for_: Duration | None = Field(default=None, alias="for")
    severity: c.Severity
    team: str
    # Omitted: the alert's series carry ``service`` themselves (one alert per service).
    service: str | None = None
    dashboard: str
    brief: str                  # one line for the runbook index: what it means
    summary: str
    description: str
    labels: dict[str, str] = Field(default_factory=dict)
    # A gateway flood causes this alert downstream: the DDoS alerts inhibit it (alertmanager/).
    caused_by_ddos: bool = False
    # The Watchdog: always firing by design, so it has no quiet case (the dead-man's switch).
    always_fires: bool = False
    # A verdict that the gateway is flooded: while it fires, Alertmanager inhibits every
    # caused_by_ddos alert (and it is never inhibited by a flood itself).
    flood: bool = False
    # A flood must never hide it (a flood slows services; it does not stop processes).
    flood_proof: bool = False
    tests: list[AlertTestSpec]

    @model_validator(mode="after")
    def _fires_and_quiet(self) -> AlertSpec:
        if self.caused_by_ddos and (self.flood or self.flood_proof):
            raise ValueError(f"alert {self.alert}: a flood or flood_proof alert cannot be caused_by_ddos")
        if self.always_fires:
            if not self.tests or not all(t.fires for t in self.tests):
                raise ValueError(f"alert {self.alert}: always_fires, so every test case must fire it")
            return self
        if not any(t.fires for t in self.tests) or not any(not t.fires for t in self.tests):
            raise ValueError(f"alert {self.alert}: needs a test case that fires it and one that does not")
        return self


def _rule_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "alert" if "alert" in value else "record"
    return "alert" if isinstance(value, AlertSpec) else "record"


RuleSpec = Annotated[
    Union[Annotated[RecordSpec, Tag("record")], Annotated[AlertSpec, Tag("alert")]],
    Discriminator(_rule_kind),
]


class GroupSpec(_Strict):
    name: str
    interval: Duration | None = None
    rules: list[RuleSpec]


class RulesSpec(_Strict):
    version: Literal[1]
    kind: Literal["rules"]
    description: str
    groups: list[GroupSpec]


# --- kind: slos -------------------------------------------------------------------------------

class BurnWindow(_Strict):
    """One window pair of the multiwindow, multi-burn-rate policy."""

    severity: c.Severity
    long: Duration
    short: Duration
    factor: float = Field(gt=0)


class SliSpec(_Strict):
    """Bad and total events as PromQL rates; ``$window`` is replaced by each window."""

    errors: str
    total: str
    # For the generated tests: series that grow by one per good event and per bad event.
    good_series: list[str]
    bad_series: list[str]

    @model_validator(mode="after")
    def _windowed(self) -> SliSpec:
        for what in ("errors", "total"):
            if "$window" not in getattr(self, what):
                raise ValueError(f"sli.{what} must contain $window (the range each window fills in)")
        return self


class SloSpec(_Strict):
    name: str
    alert: str
    title: str
    service: str
    team: str
    dashboard: str
    objective: float = Field(gt=0, lt=100)   # percent of good events
    description: str
    caused_by_ddos: bool = False
    sli: SliSpec

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(f"{value!r}: an SLO name is lower-case words joined by '-'")
        return value

    @property
    def error_budget(self) -> float:
        """Allowed share of bad events, e.g. 0.001 for 99.9 %."""
        return round(1 - self.objective / 100, 10)


class SlosSpec(_Strict):
    version: Literal[1]
    kind: Literal["slos"]
    description: str
    period: Duration
    burn_windows: list[BurnWindow]
    slos: list[SloSpec]


# --- kind: teams ------------------------------------------------------------------------------

class TeamSpec(_Strict):
    services: list[str] = Field(default_factory=list)
    description: str = ""


class TeamsSpec(_Strict):
    version: Literal[1]
    kind: Literal["teams"]
    default_team: str
    teams: dict[str, TeamSpec]

    @model_validator(mode="after")
    def _consistent(self) -> TeamsSpec:
        if self.default_team not in self.teams:
            raise ValueError(f"default_team {self.default_team!r} is not one of the teams")
        owners: dict[str, str] = {}
        for team, spec in self.teams.items():
            if not _SLUG.match(team):
                raise ValueError(f"team {team!r}: a team name is lower-case words joined by '-'")
            for service in spec.services:
                if service in owners:
                    raise ValueError(f"service {service!r} is owned by both {owners[service]} and {team}")
                owners[service] = team
        return self

    def team_of(self, service: str) -> str:
        for team, spec in self.teams.items():
            if service in spec.services:
                return team
        return self.default_team


SpecDocument = Union[RulesSpec, SlosSpec, TeamsSpec]
_KINDS: dict[str, type[BaseModel]] = {"rules": RulesSpec, "slos": SlosSpec, "teams": TeamsSpec}


def validation_problem(exc: ValidationError, *, hidden: re.Pattern[str] | None = None) -> str:
    """The first problem pydantic found, as ``field.path: what is wrong`` (``hidden`` removes
    parts of the path that name a model rather than a field, e.g. a union member)."""
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in err["loc"]) or "(top level)"
    if hidden is not None:
        where = hidden.sub("", where)
    return f"{where}: {err['msg'].removeprefix('Value error, ')}"


_problem = validation_problem


def load_text(text: str, source: str) -> SpecDocument:
    """Parse and validate one spec document; ``source`` names it in errors."""
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a spec is a mapping with version, kind and the rest")
    if raw.get("version") != SPEC_VERSION:
        raise ConfigError(f"{source}: version must be {SPEC_VERSION} (found {raw.get('version')!r})")
    kind = raw.get("kind")
    if kind not in _KINDS:
        raise ConfigError(f"{source}: kind must be one of {', '.join(_KINDS)} (found {kind!r})")
    try:
        return _KINDS[kind].model_validate(raw)  # type: ignore[return-value]
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_problem(exc)}") from None


def load_file(path: Path) -> SpecDocument:
    return load_text(path.read_text(), str(path))
