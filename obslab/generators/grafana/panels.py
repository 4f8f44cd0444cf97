"""Small builders for Grafana 11 dashboard JSON: panels, PromQL targets, layout, variables.

Plain dicts, shaped like what Grafana 11 itself exports (``schemaVersion`` 39): a builder sets
the few fields that matter here (datasource references, ``exemplar``, units, thresholds) and
leaves everything else to Grafana's defaults, so the committed JSON stays short and reviewable.
Panels are laid out in rows by :func:`layout`, which assigns ids and ``gridPos`` so no panel
carries hand-computed coordinates.

>>> from obslab.generators.grafana import panels as p
>>> panel = p.timeseries("Requests", [p.target("sum(rate(http_server_requests_total[$__rate_interval]))")],
...                      unit="reqps")
>>> row, placed = p.layout([p.Row("Traffic", [panel])])
>>> row["gridPos"], panel["gridPos"]["y"], panel["targets"][0]["datasource"]["uid"]
({'h': 1, 'w': 24, 'x': 0, 'y': 0}, 1, 'obslab-prometheus')
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from obslab import conventions as c
from obslab.generators.grafana.datasources import PROMETHEUS_REF

SCHEMA_VERSION = 39
GRID_WIDTH = 24
Panel = dict[str, Any]

# Panels whose queries can only return data where the Collector runs (compose): the metric
# name prefix -> why. The native-lab data check skips exactly these and prints the reason.
COMPOSE_ONLY_METRICS: dict[str, str] = {
    c.SERVICEGRAPH_REQUESTS.removesuffix("request_total"): "written by the OpenTelemetry Collector's servicegraph connector; "
                             "the native lab has no Collector (its trace sink computes no graph)",
    f"{c.SPANMETRICS_PREFIX}_": "written by the Collector's spanmetrics connector; the native lab has no Collector",
    "otelcol_": "the Collector's own telemetry; the native lab has no Collector",
}


def compose_only_reason(expr: str) -> str | None:
    """Why ``expr`` has no data in the native lab, or None when it must have data there."""
    for prefix, reason in COMPOSE_ONLY_METRICS.items():
        if prefix in expr:
            return reason
    return None


def target(expr: str, legend: str = "", *, exemplar: bool = False, instant: bool = False,
           table: bool = False) -> dict[str, Any]:
    """A Prometheus query of a panel (``refId`` is assigned by the panel builder)."""
    return {
        "datasource": dict(PROMETHEUS_REF),
        "editorMode": "code",
        "expr": expr,
        "exemplar": exemplar,
        "format": "table" if table else "time_series",
        "instant": instant or table,
        "legendFormat": legend or "__auto",
        "range": not (instant or table),
    }


def _panel(kind: str, title: str, targets: Sequence[dict[str, Any]], *, description: str, unit: str | None,
           width: int, height: int, defaults: dict[str, Any] | None = None,
           options: dict[str, Any] | None = None) -> Panel:
    if not targets:
        raise ValueError(f"panel {title!r} has no query")
    if not 1 <= width <= GRID_WIDTH:
        raise ValueError(f"panel {title!r}: width {width} is not within 1..{GRID_WIDTH}")
    reasons = {compose_only_reason(t["expr"]) for t in targets} - {None}
    if reasons:
        description = " ".join(filter(None, [description, "Compose only: " + "; ".join(sorted(reasons)) + "."]))
    field_defaults = dict(defaults or {})
    if unit:
        field_defaults["unit"] = unit
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": dict(PROMETHEUS_REF),
        "fieldConfig": {"defaults": field_defaults, "overrides": []},
        "options": options or {},
        "targets": [{**t, "refId": string.ascii_uppercase[i]} for i, t in enumerate(targets)],
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
    }


def thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    """Colour steps, the first one from minus infinity: ``thresholds(("green", None), ("red", 1))``."""
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


def timeseries(title: str, targets: Sequence[dict[str, Any]], *, unit: str = "short", description: str = "",
               width: int = 12, height: int = 8, min_value: float | None = None,
               threshold_line: float | None = None, stacked: bool = False) -> Panel:
    custom: dict[str, Any] = {"fillOpacity": 10 if not stacked else 40, "showPoints": "never"}
    defaults: dict[str, Any] = {"custom": custom}
    if stacked:
        custom["stacking"] = {"group": "A", "mode": "normal"}
    if min_value is not None:
        defaults["min"] = min_value
    if threshold_line is not None:
        # Drawn as a dashed line: where an alert condition starts, seen against the data.
        custom["thresholdsStyle"] = {"mode": "dashed"}
        defaults["thresholds"] = thresholds(("transparent", None), ("red", threshold_line))
    return _panel("timeseries", title, targets, description=description, unit=unit, width=width, height=height,
                  defaults=defaults, options={
                      "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                      "tooltip": {"mode": "multi", "sort": "desc"},
                  })


def stat(title: str, targets: Sequence[dict[str, Any]], *, unit: str = "short", description: str = "",
         width: int = 4, height: int = 4, steps: dict[str, Any] | None = None,
         mappings: Sequence[dict[str, Any]] = (), decimals: int | None = None) -> Panel:
    defaults: dict[str, Any] = {"thresholds": steps or thresholds(("green", None)), "mappings": list(mappings)}
    if decimals is not None:
        defaults["decimals"] = decimals
    return _panel("stat", title, targets, description=description, unit=unit, width=width, height=height,
                  defaults=defaults, options={
                      "colorMode": "background", "graphMode": "area", "justifyMode": "auto", "textMode": "auto",
                      "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                  })


def bargauge(title: str, targets: Sequence[dict[str, Any]], *, unit: str = "short", description: str = "",
             width: int = 12, height: int = 8, min_value: float | None = None, max_value: float | None = None,
             steps: dict[str, Any] | None = None) -> Panel:
    defaults: dict[str, Any] = {"thresholds": steps or thresholds(("green", None))}
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    return _panel("bargauge", title, [{**t, "instant": True, "range": False} for t in targets],
                  description=description, unit=unit, width=width, height=height, defaults=defaults, options={
                      "displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                      "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                  })


def table(title: str, targets: Sequence[dict[str, Any]], *, description: str = "", width: int = 24,
          height: int = 8, hide_columns: Iterable[str] = ("Time",), unit: str | None = None) -> Panel:
    """Instant queries as one table; several queries are merged on their common labels."""
    panel = _panel("table", title, [{**t, "format": "table", "instant": True, "range": False} for t in targets],
                   description=description, unit=unit, width=width, height=height,
                   options={"showHeader": True, "cellHeight": "sm"})
    transformations: list[dict[str, Any]] = []
    if len(targets) > 1:
        transformations.append({"id": "merge", "options": {}})
    transformations.append({"id": "organize", "options": {
        "excludeByName": {name: True for name in hide_columns}, "renameByName": {}}})
    panel["transformations"] = transformations
    return panel


def value_text(value: int | float, text: str, color: str) -> dict[str, Any]:
    """A value mapping: show ``text`` in ``color`` instead of the number."""
    return {"type": "value", "options": {str(value): {"text": text, "color": color}}}


@dataclass
class Row:
    """A titled row of panels; panels fill it left to right and wrap at the grid's width."""

    title: str
    panels: list[Panel] = field(default_factory=list)
    repeat: str | None = None


def layout(rows: Sequence[Row]) -> list[Panel]:
    """Every row and panel of a dashboard with unique ids and non-overlapping ``gridPos``."""
    out: list[Panel] = []
    y = 0
    next_id = 1
    for row in rows:
        out.append({"type": "row", "title": row.title, "id": next_id, "collapsed": False, "panels": [],
                    "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}})
        next_id += 1
        y += 1
        x, line_height = 0, 0
        for panel in row.panels:
            pos = panel["gridPos"]
            if x + pos["w"] > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            pos["x"], pos["y"] = x, y
            panel["id"] = next_id
            next_id += 1
            x += pos["w"]
            line_height = max(line_height, pos["h"])
            out.append(panel)
        y += line_height
    return out


def label_values_variable(name: str, metric: str, label: str, *, title: str, multi: bool = False,
                          include_all: bool = False) -> dict[str, Any]:
    """A template variable listing the values of ``label`` on ``metric``, refreshed on time change."""
    definition = f"label_values({metric}, {label})"
    return {
        "name": name,
        "label": title,
        "type": "query",
        "datasource": dict(PROMETHEUS_REF),
        "definition": definition,
        "query": {"qryType": 1, "query": definition, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {},
        "options": [],
        "hide": 0,
        "regex": "",
    }


def annotation(name: str, expr: str, *, title: str, text: str = "", color: str = "red") -> dict[str, Any]:
    """Prometheus-query annotations: one marker for every span of time ``expr`` has a value."""
    return {
        "name": name,
        "datasource": dict(PROMETHEUS_REF),
        "enable": True,
        "expr": expr,
        "iconColor": color,
        "step": "15s",
        "titleFormat": title,
        "textFormat": text,
        "tagKeys": "",
        "useValueForTime": False,
    }


BUILTIN_ANNOTATION: dict[str, Any] = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}
