"""Every PromQL query of a dashboard JSON model, and what Grafana does to it before sending.

Used by the checks: the unit tests parse each query with promtool and check the metric names it
reads; the live test runs each one against a lab's Prometheus. Grafana replaces its built-in
interval variables and the dashboard's template variables first, so :func:`substitute` does
the same with fixed values.

>>> substitute('rate(x{series="$series"}[$__rate_interval])', {"series": "gateway_request_rate"})
'rate(x{series="gateway_request_rate"}[1m])'
>>> metric_names('sum by (le) (rate(a_bucket{b="c"}[5m])) / on() group_left b:c:rate5m or vector(0)')
['a_bucket', 'b:c:rate5m']
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# What Grafana puts in for its built-in variables on a one-hour view of a fast lab.
BUILTIN_VALUES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}

_VARIABLE = re.compile(r"\$(\{)?(\w+)(?(1)\})")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                       "group_left", "group_right", "inf", "nan", "Inf", "NaN"})


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a dashboard, and where it sits."""

    dashboard: str
    panel: str
    ref: str           # the target's refId, or "annotation"
    expr: str
    exemplar: bool = False
    kind: str = "target"   # target | annotation

    def where(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.ref}]"


def panel_queries(model: Mapping[str, Any]) -> Iterator[Query]:
    """Every target of every panel (rows included, in case one is collapsed)."""
    def walk(panels: list[dict[str, Any]]) -> Iterator[Query]:
        for panel in panels:
            for t in panel.get("targets", ()):
                yield Query(model["uid"], panel["title"], t["refId"], t["expr"], bool(t.get("exemplar")))
            yield from walk(panel.get("panels", []))
    yield from walk(model["panels"])


def annotation_queries(model: Mapping[str, Any]) -> Iterator[Query]:
    for item in model["annotations"]["list"]:
        if "expr" in item:
            yield Query(model["uid"], item["name"], "annotation", item["expr"], kind="annotation")


def variables(model: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(model["templating"]["list"])


def variable_query(variable: Mapping[str, Any]) -> tuple[str, str]:
    """``label_values(selector, label)`` -> (a PromQL query listing the values, the label)."""
    match = _LABEL_VALUES.match(variable["definition"])
    if match is None:
        raise ValueError(f"variable {variable['name']}: only label_values(selector, label) is supported, "
                         f"got {variable['definition']!r}")
    label = match["label"]
    return f"group by ({label}) ({match['selector']})", label


def referenced_variables(expr: str) -> set[str]:
    return {m.group(2) for m in _VARIABLE.finditer(expr)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with ``$name`` / ``${name}`` replaced; an unknown variable is an error."""
    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name in BUILTIN_VALUES:
            return BUILTIN_VALUES[name]
        if name in values:
            return values[name]
        raise KeyError(f"no value for ${name} in {expr!r}")
    return _VARIABLE.sub(replace, expr)


def metric_names(expr: str) -> list[str]:
    """Metric names ``expr`` selects (label names, functions and keywords left out), in order."""
    text = _STRING.sub('""', expr)
    previous = None
    while previous != text:            # nested: {..} inside [..] subqueries, (..) in groupings
        previous = text
        text = _BRACES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return list(dict.fromkeys(name for name in _IDENTIFIER.findall(text) if name not in _KEYWORDS))
