"""The drill file format: one YAML document per scenario in ``drills/`` (format: drills/README.md).

This module checks what a file can check alone (types, durations, the cause vocabulary,
parameters a fault accepts); :mod:`obslab.drills.catalog` checks what needs the rest of the lab
(alert names, receivers, runbooks and their queries). Every error names the file and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from obslab import conventions as c
from obslab.profiles import PROFILES, Profile
from obslab.settings import ConfigError, parse_duration

DRILL_VERSION = 1
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SELECTOR = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\{\s*[a-zA-Z_][a-zA-Z0-9_]*=[^,{}=]+(\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*=[^,{}=]+)*\s*\})?$")
_CONDITION = re.compile(r"^\s*(>|>=|<|<=|==|!=)\s*(-?[0-9]+(\.[0-9]+)?)\s*$")

# What a game-day participant may answer: the causes a drill can have, named as an on-call
# would say them. A drill's ``cause`` is one of these.
CAUSES: dict[str, str] = {
    "service-errors": "a service answers errors (5xx) to its callers",
    "service-latency": "a service is slow in itself",
    "service-down": "a service is down or refuses every request",
    "database-slow": "a service's database statements are slow",
    "card-processor-slow": "the external card processor is slow",
    "iis-exceptions": "an IIS .NET application throws exceptions",
    "iis-app-pool-crash": "an IIS application pool stopped",
    "iis-slow": "an IIS site is slow",
    "iis-errors": "an IIS site answers errors",
    "traffic-surge": "legitimate traffic far above normal",
    "ddos-attack": "a distributed flood of requests from many addresses",
    "alerting-pipeline-down": "the metrics/alerting pipeline stopped (nothing can alert)",
    "telemetry-export-failing": "spans are not reaching the trace backend",
    "ml-detector-blind": "an ML detector has no fresh inputs",
}
# Components the drill runner may stop and start again (lab-level actions, not faults).
STOPPABLE = tuple(dict.fromkeys((c.PROMETHEUS, c.ALERTMANAGER, c.TRACE_SINK, c.DDOS_DETECTOR, c.BASELINER,
                                  c.LOAD_GENERATOR, *c.BANKING_SERVICES)))
STOP = "stop"


def parse_selector(text: str) -> tuple[str, dict[str, str]]:
    """``Alert{a=b,c=d}`` -> ("Alert", {"a": "b", "c": "d"}).

    >>> parse_selector("ServiceLatencyHigh{service=gateway}")
    ('ServiceLatencyHigh', {'service': 'gateway'})
    """
    name, _, rest = text.partition("{")
    labels = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if part.strip())
    return name.strip(), {k.strip(): v.strip() for k, v in labels.items()}


def seconds(text: str, where: str = "") -> float:
    try:
        return parse_duration(text, allow_zero=True)
    except ConfigError as exc:
        raise ValueError(f"{where}: {exc}" if where else str(exc)) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerProfile(_Strict):
    """A duration that differs by time profile: ``{production: 15m, fast: 2m}``."""

    production: str
    fast: str

    @model_validator(mode="after")
    def _durations(self) -> PerProfile:
        for name in PROFILES:
            seconds(getattr(self, name), name)
        return self


Timing = Union[str, PerProfile]


def timing_seconds(value: Timing, profile: Profile) -> float:
    return parse_duration(value if isinstance(value, str) else getattr(value, profile.name), allow_zero=True)


def _check_timing(value: Timing) -> Timing:
    if isinstance(value, str):
        seconds(value)
    return value


class Step(_Strict):
    """One entry of the timeline: a fault the injector applies, or a component stopped by the runner."""

    kind: str
    target: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    start: Timing = "0s"
    duration: Timing

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> Any:
        if value == STOP:
            return value
        try:
            return c.FaultKind(value)
        except ValueError:
            raise ValueError(f"unknown kind {value!r}; a fault kind ({', '.join(k.value for k in c.FaultKind)}) "
                             f"or {STOP!r} (a component)") from None

    @field_validator("start", "duration")
    @classmethod
    def _timing(cls, value: Timing) -> Timing:
        return _check_timing(value)

    @model_validator(mode="after")
    def _fault(self) -> Step:
        if self.kind == STOP:
            if self.params:
                raise ValueError("a stop step takes no params")
            if self.target not in STOPPABLE:
                raise ValueError(f"target {self.target!r} cannot be stopped by a drill; choose one of: "
                                 f"{', '.join(STOPPABLE)}")
            return self
        from obslab.faults.model import FaultRequest

        try:
            FaultRequest(kind=self.kind, target=self.target, **self.params)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in err["loc"])
            raise ValueError((f"params.{where}: " if where else "") + err["msg"].removeprefix("Value error, ")) \
                from None
        except TypeError as exc:
            raise ValueError(f"params: {exc}") from None
        return self

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        what = f"stop {self.target}" if self.kind == STOP else f"{self.kind.value} on {self.target}"
        return what + (f" ({shown})" if shown else "")

    @property
    def kind_name(self) -> str:
        return self.kind.value if isinstance(self.kind, c.FaultKind) else self.kind


Labels = dict[Annotated[str, Field(pattern=_LABEL.pattern)], str]


class Expect(_Strict):
    """An alert that must fire, reach ``receiver`` within ``within`` of the fault start."""

    alert: str
    labels: Labels = Field(default_factory=dict)
    receiver: str
    within: Timing
    # Time the rule's expression needs to cross its threshold once the fault bites (e.g. 5 % of
    # a 5-minute window), in the active profile: part of the theoretical floor (drills/README.md).
    condition: Timing = "0s"
    # Which timeline step causes it (its index, from 0): the deadline and the figures count from
    # that step's start.
    after: int = Field(default=0, ge=0)
    # The dead-man's switch: the alert (the Watchdog) must stop arriving at ``receiver``; the
    # switch trips when it has missed two heartbeats (see obslab/drills/runner.py).
    absent: bool = False

    @field_validator("within")
    @classmethod
    def _timing(cls, value: Timing) -> Timing:
        return _check_timing(value)

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: Timing) -> Timing:
        return _check_timing(value)


class Quiet(_Strict):
    """An alert that must not fire; with ``inhibited: true`` it may fire in Prometheus but
    Alertmanager must hold it back (it must never be delivered)."""

    alert: str
    labels: Labels = Field(default_factory=dict)
    inhibited: bool = False


class Diagnose(_Strict):
    """A runbook diagnosis query that must show the cause during the incident and not before."""

    runbook: str
    query: str = Field(min_length=1)
    labels: Labels = Field(default_factory=dict)
    shows: str = Field(description="a comparison a series' value meets when it shows the cause, e.g. '> 0.5'")

    @field_validator("shows")
    @classmethod
    def _comparison(cls, value: str) -> str:
        if not _CONDITION.match(value):
            raise ValueError(f"shows {value!r} must be a comparison with a number, e.g. '> 0.5' or '== 1'")
        return value

    def holds(self, value: float) -> bool:
        match = _CONDITION.match(self.shows)
        assert match is not None
        op, number = match.group(1), float(match.group(2))
        return {">": value > number, ">=": value >= number, "<": value < number, "<=": value <= number,
                "==": value == number, "!=": value != number}[op]


class Resolve(_Strict):
    """An alert that must resolve (stop firing, and its resolved notification arrive where the
    receiver sends them) within ``within`` of the fault's end."""

    alert: str
    labels: Labels = Field(default_factory=dict)
    within: Timing

    @field_validator("within")
    @classmethod
    def _timing(cls, value: Timing) -> Timing:
        return _check_timing(value)


class Drill(_Strict):
    version: Literal[1]
    name: str
    title: str = Field(min_length=3, max_length=120)
    story: str = Field(min_length=10, max_length=2000)
    cause: str
    timeline: list[Step] = Field(min_length=1)
    expect: list[Expect] = Field(min_length=1)
    quiet: list[Quiet] = Field(default_factory=list)
    diagnose: list[Diagnose] = Field(default_factory=list)
    resolve: list[Resolve] = Field(default_factory=list)
    # Alerts this scenario may also raise without being a surprise (a slow service slows its
    # callers), as ``Alert`` or ``Alert{label=value,...}``; anything else that starts firing is
    # reported as unexpected.
    tolerate: list[str] = Field(default_factory=list)

    @field_validator("tolerate")
    @classmethod
    def _selectors(cls, value: list[str]) -> list[str]:
        for i, text in enumerate(value):
            if not _SELECTOR.match(text):
                raise ValueError(f"tolerate.{i}: {text!r} must be an alert name, optionally with labels: "
                                 "Alert{label=value,...}")
        return value

    def tolerated(self) -> list[tuple[str, dict[str, str]]]:
        return [parse_selector(text) for text in self.tolerate]
    # Runbook mitigations the lab supports that end this incident (game mode scores them).
    mitigation: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not c.DRILL_NAME.fullmatch(value):
            raise ValueError(f"name {value!r} must be lower-case words joined by '-' (2-63 characters)")
        return value

    @field_validator("cause")
    @classmethod
    def _cause(cls, value: str) -> str:
        if value not in CAUSES:
            raise ValueError(f"cause {value!r} is not in the vocabulary; choose one of: {', '.join(CAUSES)}")
        return value

    @model_validator(mode="after")
    def _steps(self) -> Drill:
        for i, expect in enumerate(self.expect):
            if expect.after >= len(self.timeline):
                raise ValueError(f"expect.{i}.after: step {expect.after} does not exist "
                                 f"(the timeline has {len(self.timeline)})")
        return self

    def runbooks(self) -> list[str]:
        return list(dict.fromkeys([*(e.alert for e in self.expect), *(d.runbook for d in self.diagnose)]))

    def fault_kinds(self) -> list[str]:
        return list(dict.fromkeys(step.kind_name for step in self.timeline))


# Union members report as e.g. "within.str" / "within.PerProfile.fast": keep the field path readable.
_UNION_MEMBERS = re.compile(r"\.(str|PerProfile|function-after\[[^\]]*\])")


def _problem(exc: ValidationError) -> str:
    from obslab.rules.spec import validation_problem

    return validation_problem(exc, hidden=_UNION_MEMBERS)


def load_text(text: str, source: str) -> Drill:
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a drill is a mapping with version, name, title, story, cause, timeline ...")
    if raw.get("version") != DRILL_VERSION:
        raise ConfigError(f"{source}: version: must be {DRILL_VERSION} (found {raw.get('version')!r})")
    try:
        return Drill.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_problem(exc)}") from None


def load_file(path: Path) -> Drill:
    drill = load_text(path.read_text(), str(path))
    if drill.name != path.stem:
        raise ConfigError(f"{path}: name: {drill.name!r} must equal the file name ({path.stem!r})")
    return drill
