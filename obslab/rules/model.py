"""The rule spec's types: recording rules, alert rules and the groups Prometheus evaluates.

Rules are data. Every convention (recording rule names, the routing labels, the annotations,
one runbook and one dashboard URL pattern) is enforced when a rule is built, so a rule that
breaks one fails at import time with a message naming it, not later in Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Union

from obslab import conventions as c
from obslab import topology
from obslab.profiles import PRODUCTION, Profile
from obslab.settings import PROMETHEUS_DURATION

# level:metric:operations; the level may be empty for an aggregate over everything.
_RECORD_NAME = re.compile(r"^[a-z_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$")
_ALERT_NAME = re.compile(r"^[A-Z][A-Za-z0-9]+$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = frozenset({c.L_SEVERITY, c.L_TEAM, c.L_SERVICE, "alertname"})


def _check_expr(owner: str, expr: str) -> None:
    if not expr.strip():
        raise ValueError(f"{owner}: expr is empty")


@dataclass(frozen=True)
class RecordingRule:
    """A PromQL expression Prometheus evaluates and stores under ``record``.

    >>> RecordingRule("site:http_requests:rate5m", "sum by (site) (rate(http_requests_total[5m]))").record
    'site:http_requests:rate5m'
    """

    record: str
    expr: str
    labels: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not _RECORD_NAME.match(self.record):
            raise ValueError(f"recording rule {self.record!r}: name must be level:metric:operations "
                             "(lower case, e.g. site:windows_iis_requests:rate5m)")
        _check_expr(self.record, self.expr)
        for key, _ in self.labels:
            if not _LABEL_NAME.match(key):
                raise ValueError(f"recording rule {self.record}: {key!r} is not a label name")

    @property
    def name(self) -> str:
        return self.record

    def to_dict(self, profile: Profile = PRODUCTION, runbook_base: str = topology.RUNBOOK_BASE_URL) -> dict[str, Any]:
        out: dict[str, Any] = {"record": self.record, "expr": self.expr}
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


@dataclass(frozen=True)
class AlertRule:
    """An alert with the lab's routing labels and annotations.

    ``runbook_url`` and ``dashboard_url`` are derived (one pattern each, from conventions);
    ``summary`` and ``description`` are Prometheus templates (``{{ $labels.site }}``,
    ``{{ $value }}``).

    >>> rule = AlertRule("DiskFull", "disk_free_ratio < 0.05", for_="10m",
    ...                  severity=c.Severity.WARNING, team="storage", service="disk",
    ...                  summary="Disk almost full", description="Less than 5 % free.",
    ...                  dashboard="disks")
    >>> rule.annotations()["runbook_url"]
    'http://localhost:8095/runbooks/DiskFull.md'
    """

    alert: str
    expr: str
    for_: str | None
    severity: c.Severity
    team: str                   # a team name, or a template choosing one from $labels.service
    service: str | None         # None: the alert's series carry ``service`` (one alert per service)
    summary: str
    description: str
    dashboard: str              # Grafana dashboard UID
    extra_labels: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not _ALERT_NAME.match(self.alert):
            raise ValueError(f"alert {self.alert!r}: name must be UpperCamelCase")
        _check_expr(self.alert, self.expr)
        # SLO burn-rate alerts carry no `for:` (the short window is their confirmation).
        if self.for_ is not None and not PROMETHEUS_DURATION.match(self.for_):
            raise ValueError(f"alert {self.alert}: for_ {self.for_!r} is not a Prometheus duration (e.g. 5m)")
        if not isinstance(self.severity, c.Severity):
            raise ValueError(f"alert {self.alert}: severity must be one of "
                             f"{', '.join(s.value for s in c.Severity)}, got {self.severity!r}")
        if self.service is not None and not self.service.strip():
            raise ValueError(f"alert {self.alert}: service is empty (omit it to take the series' own)")
        for what in ("team", "summary", "description", "dashboard"):
            if not getattr(self, what).strip():
                raise ValueError(f"alert {self.alert}: {what} is empty")
        for key, _ in self.extra_labels:
            if not _LABEL_NAME.match(key) or key in _RESERVED_LABELS:
                raise ValueError(f"alert {self.alert}: extra label {key!r} is not a free label name")

    @property
    def name(self) -> str:
        return self.alert

    def labels(self) -> dict[str, str]:
        routing = {c.L_SEVERITY: self.severity.value, c.L_TEAM: self.team}
        if self.service is not None:
            routing[c.L_SERVICE] = self.service
        return {**routing, **dict(self.extra_labels)}

    def annotations(self, runbook_base: str = topology.RUNBOOK_BASE_URL) -> dict[str, str]:
        return {
            c.A_SUMMARY: self.summary,
            c.A_DESCRIPTION: self.description,
            c.A_RUNBOOK_URL: topology.runbook_url(self.alert, runbook_base),
            c.A_DASHBOARD_URL: topology.dashboard_url(self.dashboard),
        }

    def to_dict(self, profile: Profile = PRODUCTION, runbook_base: str = topology.RUNBOOK_BASE_URL) -> dict[str, Any]:
        out: dict[str, Any] = {"alert": self.alert, "expr": self.expr}
        if self.for_ is not None:
            out["for"] = profile.alert_for(self.for_)
        out["labels"] = self.labels()
        out["annotations"] = self.annotations(runbook_base)
        return out


Rule = Union[RecordingRule, AlertRule]


@dataclass(frozen=True)
class RuleGroup:
    """Rules Prometheus evaluates in order, at one interval (the global one unless ``interval``).

    Order matters: a rule sees what earlier rules of its group recorded in the same evaluation,
    while a rule of another group sees it one evaluation later.

    >>> RuleGroup("demo.rules", (RecordingRule("job:up:sum", "sum by (job) (up)"),)).names()
    ['job:up:sum']
    """

    name: str
    rules: tuple[Rule, ...]
    interval: str | None = None
    # The spec's rule groups scale their ranges with the profile (Profile.scale_ranges); the SLO
    # groups are built for a profile already and keep theirs.
    scale_ranges: bool = False

    def __post_init__(self) -> None:
        if not self.rules:
            raise ValueError(f"rule group {self.name!r} has no rules")
        if self.interval is not None and not PROMETHEUS_DURATION.match(self.interval):
            raise ValueError(f"rule group {self.name!r}: interval {self.interval!r} is not a duration")
        # One alert name may have several rules (an SLO's window pairs) told apart by labels.
        seen: set[tuple[str, tuple]] = set()
        for rule in self.rules:
            key = (rule.name, tuple(sorted(rule.labels().items())) if isinstance(rule, AlertRule) else ())
            if key in seen:
                raise ValueError(f"rule group {self.name!r}: {rule.name} is defined twice")
            seen.add(key)

    def names(self) -> list[str]:
        return [rule.name for rule in self.rules]

    def alerts(self) -> Iterator[AlertRule]:
        return (rule for rule in self.rules if isinstance(rule, AlertRule))

    def to_dict(self, profile: Profile = PRODUCTION, runbook_base: str = topology.RUNBOOK_BASE_URL) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.interval is not None:
            out["interval"] = self.interval
        out["rules"] = [rule.to_dict(profile, runbook_base) for rule in self.rules]
        if self.scale_ranges:
            for rule in out["rules"]:
                rule["expr"] = profile.scale_ranges(rule["expr"])
        return out
