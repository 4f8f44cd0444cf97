"""The SLO report (``obslab slo report``): per SLO of the spec, over a window of days, the objective,
the achieved ratio, the error budget spent and left, the worst burn hours, and the incidents
(alerts) that spent it; as text, one JSON object, or a self-contained HTML page with a burn-down
picture per SLO.

Source of truth: Prometheus. The SLOs (name, title, objective, service, team, alert, period) come
from ``prometheus/spec/slos.yml``; the data is the recorded 5-minute error ratio
``slo:sli_error:ratio_rate5m{slo=...}`` of :mod:`obslab.rules.slo`, read with ONE range query per
SLO at a step of the evaluation interval (coarser when the window would exceed Prometheus's 11,000
points: 60 s for 7 days, 300 s for 35), plus one range query of ``ALERTS{alertstate="firing"}``
for all SLOs.

Definitions (r(t): the 5-minute error ratio at each point t of the window, points with no traffic
left out; budget b = 1 - objective):

* achieved = 1 - mean r: the same definition as ``slo:error_budget_remaining:ratio`` (the average
  of the 5-minute ratios, Sloth's choice), over the report's window instead of the period. An SLO
  without a single point (no traffic) says "no traffic", not 100 %.
* budget spent = mean r / b: the share of the window's error budget (the budget the window would
  have if it were the whole period) that the window spent; left = 1 - spent (negative:
  overspent). ``spent_of_period`` is the same spend as a share of one whole period's budget (30
  days; 3 days on a fast lab): sum(r x step) / (b x period); the text prints both.
* worst hours: clock-aligned hours [H, H+1h) by burn rate (the hour's mean r / b), top 5, each with
  the share of the window's budget it spent. A point t holds the state at t until the next point.
* incidents: every alert firing in the window (``max_over_time(ALERTS{alertstate="firing"}[step])``
  at each point: fired since the previous point; the Watchdog left out) becomes intervals per
  alert; an alert is its name and labels without ``alertstate``, ``severity``, ``team`` and the
  burn-window pair (the four pairs of an SLO's own alert are one incident). Each SLO gets, per
  interval, the budget spent at the points where the alert fired, if the SLO burned faster than
  its budget allows meanwhile (burn rate > 1) and at least twice as fast as outside every
  incident (so a background burn near 1x does not pin unrelated incidents on it): its own burn
  alerts and any other
  (ServiceErrorRateHigh, BankingServiceDown, DDoSAttackSuspected ...); the top 5 by budget spent.
  Incidents overlap, so their shares do not add up; ``spent_without_incident`` is what no
  incident covered.

The fast profile divides the SLO windows by 10 (``Profile.slo_window``); the recorded names keep
the production window. On a fast lab the report's "hour" is the fast hour (6 minutes) and the
period is 3 days, so its figures read like the lab's alerts. The profile is the one the lab
recorded (``--profile`` overrides; production for ``--prometheus URL``).

History (``obslab history``) backfills raw series only: Prometheus does not evaluate recording
or alert rules over backfilled blocks, and ``promtool tsdb create-blocks-from rules`` skips alert
rules. So the query falls back, at each point where the recorded ratio is absent, to the SLI
expression the rule records (``max(recorded) or (sli)``, at the production 5m window: history's
samples are up to 150 s apart); and the incidents of ``<data-dir>/history/incidents.json`` that
overlap the window are incidents too (source ``history``, attributed from their start to 5 minutes
after their end, the ratio's window), since no alert ever fired for them.

JSON (``--json``), ratios and shares as fractions (0.999 is 99.9 %):

    {"generated_at": ISO, "prometheus": URL, "profile": "production"|"fast",
     "window": {"start": ISO, "end": ISO, "start_unix": S, "end_unix": S, "days": D,
                "step_seconds": N, "hour_seconds": N, "data_from": ISO|null},
     "slos": [{"name", "title", "service", "team", "alert", "objective": 0.999,
               "error_budget": 0.001, "period": "30d", "period_seconds": S,
               "traffic": true|false, "covered_seconds": S,
               "achieved": 0.9995|null,
               "budget": {"spent": F, "remaining": F, "spent_of_period": F,
                          "spent_without_incident": F}|null,
               "worst_hours": [{"start": ISO, "end": ISO, "start_unix": S, "end_unix": S,
                                "burn_rate": F, "budget_spent": F}, ...],
               "incidents": [{"name": "ServiceErrorRateHigh{service=payments}",
                              "source": "alert"|"history", "labels": {...},
                              "severity": "critical"|"warning"|"info"|null,
                              "start": ISO, "end": ISO, "start_unix": S, "end_unix": S,
                              "minutes": F, "burn_rate": F, "budget_spent": F}, ...]}, ...]}
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import requests
import yaml

from obslab import conventions as c
from obslab.errors import CliError
from obslab.labapi import text_table
from obslab.profiles import Profile
from obslab.rules import slo as slo_rules
from obslab.rules.promtool_tests import ALERTS
from obslab.rules.spec import SloSpec, SlosSpec
from obslab.settings import parse_duration
from obslab.sim.incidents import iso8601

DEFAULT_DAYS = 7
TOP_HOURS = 5
BACKGROUND_MULTIPLE = 2.0   # an incident's burn over the SLO's burn outside incidents
TOP_INCIDENTS = 5
# Prometheus answers at most 11,000 points per series and range query.
MAX_POINTS = 11_000
# A window may start this much before the oldest sample Prometheus holds (a lab 6 days 23 hours
# old still answers --days 7); more is refused.
START_TOLERANCE_SECONDS = 3600
# History incidents spend budget until the 5-minute ratio has forgotten them.
HISTORY_LAG_SECONDS = 300
PLOT_POINTS = 1500
# Labels that do not tell one alert from another in the report.
NOT_IDENTITY = frozenset({"__name__", "alertstate", c.L_SEVERITY, c.L_TEAM, c.L_LONG_WINDOW, c.L_SHORT_WINDOW})
_SEVERITY_RANK = {c.Severity.CRITICAL.value: 3, c.Severity.WARNING.value: 2, c.Severity.INFO.value: 1}


# --- Prometheus --------------------------------------------------------------------------------


class Prometheus:
    """The few reads the report makes; every failure is a CliError that says what to do."""

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        # The lab's Prometheus is on loopback: never through a proxy.
        self.session.trust_env = urlparse(self.url).hostname not in ("127.0.0.1", "localhost", "::1")

    def _get(self, path: str, params: dict[str, Any] | None = None) -> requests.Response:
        try:
            return self.session.get(f"{self.url}{path}", params=params, timeout=self.timeout)
        except requests.ConnectionError:
            raise CliError(f"Prometheus is not reachable at {self.url}; is the lab running? (`obslab status`; "
                           "or pass --prometheus URL)") from None
        except requests.Timeout:
            raise CliError(f"Prometheus at {self.url} did not answer within {self.timeout:g} s") from None

    def _api(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = self._get(f"/api/v1/{path}", params)
        try:
            body = response.json()
        except ValueError:
            raise CliError(f"{self.url} did not answer like Prometheus (HTTP {response.status_code})") from None
        if response.status_code != 200 or body.get("status") != "success":
            raise CliError(f"Prometheus at {self.url} refused {path}: {body.get('error', response.status_code)}")
        return body["data"]

    def evaluation_seconds(self) -> float | None:
        """The global rule evaluation interval (None when the configuration cannot be read)."""
        try:
            config = yaml.safe_load(self._api("status/config")["yaml"]) or {}
            return parse_duration(str((config.get("global") or {}).get("evaluation_interval", "1m")))
        except (CliError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError):
            return None

    def lowest_timestamp(self) -> float | None:
        """The oldest sample Prometheus holds (``prometheus_tsdb_lowest_timestamp`` of its own
        /metrics: the first block's start, else the head's); None when unknown."""
        try:
            text = self._get("/metrics").text
        except CliError:
            return None
        found = re.search(r"^prometheus_tsdb_lowest_timestamp (\S+)$", text, re.MULTILINE)
        if not found:
            return None
        try:
            return float(found.group(1)) / 1000
        except ValueError:
            return None

    def range(self, expr: str, window: Window) -> tuple[list[dict[str, str]], np.ndarray]:
        """``expr`` at every point of ``window``: the series' labels and a (series, points) array,
        NaN where a series has no value."""
        stamps = window.timestamps
        data = self._api("query_range", {"query": expr, "start": f"{stamps[0]:.0f}", "end": f"{stamps[-1]:.0f}",
                                         "step": f"{window.step}"})
        labels: list[dict[str, str]] = []
        values = np.full((len(data["result"]), len(stamps)), np.nan)
        for row, item in enumerate(data["result"]):
            labels.append(item["metric"])
            for ts, value in item["values"]:
                index = int(round((float(ts) - stamps[0]) / window.step))
                if 0 <= index < len(stamps):
                    values[row, index] = float(value)
        return labels, values


# --- the window ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Points every ``step`` seconds in [start, end), both multiples of ``step``; a point t holds
    the state at t until t + step. ``hour_s`` divides evenly into steps (or is a multiple of one)."""

    start: float
    end: float
    step: int
    hour_s: int
    data_from: float | None = None   # the oldest sample, when later than start

    @property
    def timestamps(self) -> np.ndarray:
        return np.arange(self.start, self.end - self.step / 2, self.step)

    @property
    def days(self) -> float:
        return (self.end - self.start) / 86400


def choose_step(span_s: float, evaluation_s: float, hour_s: int) -> int:
    """The smallest step of at least the evaluation interval that keeps the window within one
    query (<= 11,000 points) and fits hours evenly.

    >>> choose_step(7 * 86400, 15, 3600), choose_step(86400, 15, 3600), choose_step(3600, 2, 360)
    (60, 15, 2)
    """
    needed = max(evaluation_s, span_s / (MAX_POINTS - 1), 1)
    for divisor in range(1, hour_s + 1):
        if hour_s % divisor == 0 and divisor >= needed:
            return divisor
    return hour_s * math.ceil(needed / hour_s)


def plan_window(*, end: float, days: int | None, lowest: float | None, evaluation_s: float,
                hour_s: int, now: float | None = None) -> Window:
    """``days`` ending at ``end``; None: the last 7 days, or since the oldest sample when
    Prometheus holds less. Refuses N < 1, an end in the future and a window beyond the data."""
    now = time.time() if now is None else now
    if end > now + 60:
        raise CliError(f"--end {iso8601(end)} is in the future")
    if lowest is not None and lowest > end:
        raise CliError(f"Prometheus holds no data before {iso8601(end)} (its oldest sample is "
                       f"{'from ' + iso8601(lowest) if lowest < now else 'not there yet'})")
    if days is None:
        span = DEFAULT_DAYS * 86400.0
        if lowest is not None:
            span = min(span, end - lowest)
    else:
        if days < 1:
            raise CliError(f"--days must be at least 1, got {days}")
        span = days * 86400.0
        if lowest is not None and end - span < lowest - START_TOLERANCE_SECONDS:
            held = (end - lowest) / 86400
            fix = f"ask for --days {math.floor(held)} or fewer, or" if held >= 1 else "pass --end later, or"
            raise CliError(f"Prometheus holds {held:.1f} days before {iso8601(end)} (from {iso8601(lowest)}), "
                           f"not {days}: {fix} leave --days out")
    step = choose_step(span, evaluation_s, hour_s)
    last = math.floor(end / step) * step
    first = math.ceil((end - span) / step) * step
    if last - first < step:
        first = last - step
    data_from = lowest if lowest is not None and lowest >= first + step else None
    return Window(float(first), float(last), step, hour_s, data_from)


# --- queries -----------------------------------------------------------------------------------


def ratio_query(spec: SlosSpec, slo: SloSpec) -> str:
    """The recorded 5-minute error ratio, else (history, a gap in rule evaluation) the SLI the
    rule records, at the production window."""
    recorded = slo_rules.error_ratio(slo_rules.BUDGET_WINDOW)
    inline = next(rule.expr for rule in slo_rules.sli_group(spec, slo).rules if rule.record == recorded)
    return f'max({recorded}{{{c.L_SLO}="{slo.name}"}})\nor\n(\n{inline}\n)'


def alerts_query(step: int) -> str:
    """Firing at a point t: the alert was firing at an evaluation in (t - step, t] (the latest one
    when the step is the evaluation interval; Prometheus 2's ranges include both ends, hence the
    millisecond)."""
    return f'max_over_time({ALERTS}{{alertstate="firing"}}[{step * 1000 - 1}ms])'


# --- incidents ---------------------------------------------------------------------------------


@dataclass
class Incident:
    name: str
    source: str                 # "alert" or "history"
    labels: dict[str, str]
    severity: str | None
    start: float
    end: float
    mask: np.ndarray            # the window's points it covers
    description: str = ""


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1))


def alert_name(labels: dict[str, str]) -> str:
    """``alertname{other=identity,labels=...}``.

    >>> alert_name({"alertname": "ServiceErrorRateHigh", "service": "payments"})
    'ServiceErrorRateHigh{service=payments}'
    """
    rest = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != c.L_ALERTNAME)
    return labels.get(c.L_ALERTNAME, "?") + (f"{{{rest}}}" if rest else "")


def alert_incidents(labels: Sequence[dict[str, str]], values: np.ndarray, window: Window, *,
                    ignore: frozenset[str] = frozenset()) -> list[Incident]:
    """Each firing interval of each alert (series merged by identity), ``ignore``'s alerts left out."""
    merged: dict[tuple, tuple[dict[str, str], np.ndarray, set[str]]] = {}
    for series, row in zip(labels, values):
        if series.get(c.L_ALERTNAME) in ignore:
            continue
        identity = {k: v for k, v in series.items() if k not in NOT_IDENTITY}
        _, mask, severities = merged.setdefault(tuple(sorted(identity.items())),
                                                (identity, np.zeros(len(row), dtype=bool), set()))
        mask |= ~np.isnan(row) & (np.nan_to_num(row) > 0)
        if c.L_SEVERITY in series:
            severities.add(series[c.L_SEVERITY])
    stamps = window.timestamps
    out = []
    for identity, mask, severities in merged.values():
        severity = max(severities, key=lambda s: _SEVERITY_RANK.get(s, 0)) if severities else None
        for first, last in _runs(mask):
            run = np.zeros(len(mask), dtype=bool)
            run[first:last + 1] = True
            out.append(Incident(alert_name(identity), "alert", identity, severity,
                                float(stamps[first]), float(stamps[last] + window.step), run))
    return out


def history_incidents(path: Path, window: Window) -> list[Incident]:
    """The incidents ``obslab history`` simulated in the window (``incidents.json``), if any."""
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    stamps = window.timestamps
    out = []
    for item in recorded if isinstance(recorded, list) else []:
        try:
            start, end = float(item["start_unix"]), float(item["end_unix"])
            kind, target = str(item["kind"]), str(item["target"])
        except (KeyError, TypeError, ValueError):
            continue
        mask = (stamps >= start) & (stamps < end + HISTORY_LAG_SECONDS)
        if mask.any():
            out.append(Incident(f"history: {kind} {target}", "history", {"kind": kind, "target": target}, None,
                                start, end, mask, str(item.get("description", ""))))
    return out


# --- the analysis --------------------------------------------------------------------------------


@dataclass
class SloResult:
    data: dict[str, Any]                    # the SLO's part of the JSON
    timestamps: np.ndarray
    remaining: np.ndarray | None            # burn-down: the window's budget left after each point
    shaded: list[Incident] = field(default_factory=list)


@dataclass
class Report:
    data: dict[str, Any]                    # the JSON object
    slos: list[SloResult]


def _interval(start: float, end: float) -> dict[str, Any]:
    return {"start": iso8601(start), "end": iso8601(end), "start_unix": start, "end_unix": end}


def analyse(spec: SlosSpec, slo: SloSpec, ratios: np.ndarray, window: Window, incidents: Sequence[Incident],
            profile: Profile) -> SloResult:
    """One SLO's figures from its error ratio at the window's points (NaN: no traffic)."""
    period_s = parse_duration(profile.slo_window(spec.period))
    budget = slo.error_budget
    stamps = window.timestamps
    valid = ~np.isnan(ratios)
    data: dict[str, Any] = {
        "name": slo.name, "title": slo.title, "service": slo.service, "team": slo.team, "alert": slo.alert,
        "objective": round(slo.objective / 100, 10), "error_budget": budget,
        "period": spec.period, "period_seconds": period_s,
        "traffic": bool(valid.any()), "covered_seconds": float(valid.sum() * window.step),
        "achieved": None, "budget": None, "worst_hours": [], "incidents": [],
    }
    if not valid.any():
        return SloResult(data, stamps, None)
    r = np.where(valid, ratios, 0.0)
    covered = valid.sum() * window.step
    spend = r * window.step / (budget * covered)        # each point's share of the window's budget
    spent = float(spend.sum())
    data["achieved"] = 1 - float(r[valid].mean())
    data["budget"] = {
        "spent": spent, "remaining": 1 - spent,
        "spent_of_period": float((r * window.step).sum() / (budget * period_s)),
    }

    hour_of = np.floor(stamps / window.hour_s) * window.hour_s   # [H, H + hour)
    hours = []
    for hour in np.unique(hour_of[valid]):
        inside = valid & (hour_of == hour)
        burn = float(r[inside].mean() / budget)
        if burn > 0:
            hours.append({**_interval(float(hour), float(hour + window.hour_s)), "burn_rate": burn,
                          "budget_spent": float(spend[inside].sum())})
    hours.sort(key=lambda h: (-h["burn_rate"], -h["budget_spent"], h["start_unix"]))
    data["worst_hours"] = hours[:TOP_HOURS]

    # An incident spent this SLO's budget if the SLO burned faster than the budget allows while it
    # lasted and clearly faster than it burns outside every incident: a background burn near 1x
    # (simulated history's noise) must not pin every unrelated incident (an IIS site) on it.
    in_any = np.zeros(len(r), dtype=bool)
    for incident in incidents:
        in_any |= incident.mask
    quiet = valid & ~in_any
    background = float(r[quiet].mean() / budget) if quiet.any() else 0.0
    floor = max(1.0, BACKGROUND_MULTIPLE * background)
    attributed = []
    for incident in incidents:
        inside = incident.mask & valid
        share = float(spend[inside].sum())
        burn = float(r[inside].mean() / budget) if inside.any() else 0.0
        if burn > floor:
            attributed.append((share, incident, burn))
    attributed.sort(key=lambda a: (-a[0], a[1].start))
    anywhere = np.zeros(len(r), dtype=bool)
    for _, incident, _ in attributed:
        anywhere |= incident.mask
    data["budget"]["spent_without_incident"] = float(spend[~anywhere].sum())
    top = attributed[:TOP_INCIDENTS]
    data["incidents"] = [{
        "name": incident.name, "source": incident.source, "labels": incident.labels, "severity": incident.severity,
        **_interval(incident.start, incident.end), "minutes": (incident.end - incident.start) / 60,
        "burn_rate": burn, "budget_spent": share,
    } for share, incident, burn in top]
    return SloResult(data, stamps, 1 - np.cumsum(spend), [incident for _, incident, _ in top])


def slo_specs() -> list[tuple[SlosSpec, SloSpec]]:
    """Every SLO of the spec, with the spec (period, policy) it belongs to."""
    from obslab.rules.build import load_catalog

    return [(f.slos, slo) for f in load_catalog().files if f.slos for slo in f.slos.slos]


def watchdog() -> str | None:
    from obslab.rules.build import load_catalog

    try:
        return load_catalog().watchdog()
    except Exception:   # a spec without exactly one Watchdog: nothing to leave out
        return None


def build(prometheus: Prometheus, *, profile: Profile, end: float | None = None, days: int | None = None,
          history_file: Path | None = None, specs: Sequence[tuple[SlosSpec, SloSpec]] | None = None,
          now: float | None = None) -> Report:
    """The report: 2 reads of Prometheus's state, 1 range query per SLO, 1 of the alerts."""
    now = time.time() if now is None else now
    specs = slo_specs() if specs is None else specs
    hour_s = int(parse_duration(profile.slo_window("1h")))
    evaluation_s = prometheus.evaluation_seconds() or profile.evaluation_s
    window = plan_window(end=now if end is None else end, days=days, lowest=prometheus.lowest_timestamp(),
                         evaluation_s=evaluation_s, hour_s=hour_s, now=now)
    ignore = frozenset(filter(None, [watchdog()]))
    incidents = alert_incidents(*prometheus.range(alerts_query(window.step), window), window, ignore=ignore)
    if history_file is not None:
        incidents += history_incidents(history_file, window)
    results = []
    for spec, slo in specs:
        _, values = prometheus.range(ratio_query(spec, slo), window)
        ratios = np.fmax.reduce(values, axis=0) if len(values) else np.full(len(window.timestamps), np.nan)
        results.append(analyse(spec, slo, ratios, window, incidents, profile))
    data = {
        "generated_at": iso8601(now), "prometheus": prometheus.url, "profile": profile.name,
        "window": {**_interval(window.start, window.end), "days": window.days, "step_seconds": window.step,
                   "hour_seconds": window.hour_s,
                   "data_from": iso8601(window.data_from) if window.data_from is not None else None},
        "slos": [r.data for r in results],
    }
    return Report(data, results)


# --- text ----------------------------------------------------------------------------------------


def _pct(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f} %"


def _when(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _span(start: float, end: float) -> str:
    same_day = _when(start)[:10] == _when(end - 1)[:10]
    return f"{_when(start)}-{_when(end)[11:] if same_day else _when(end)}"


def _days(days: float) -> str:
    return "1 day" if f"{days:.3g}" == "1" else f"{days:.3g} days"


def _hour_word(hour_s: int) -> str:
    return "hours" if hour_s == 3600 else f"{hour_s // 60}-minute periods (this profile's hour)"


def render_text(report: Report) -> str:
    data = report.data
    window = data["window"]
    lines = [
        f"SLO report {_when(window['start_unix'])} .. {_when(window['end_unix'])} UTC "
        f"({_days(window['days'])}, a point every {window['step_seconds']} s; {data['profile']} profile; "
        f"Prometheus {data['prometheus']})",
    ]
    if window["data_from"]:
        lines.append(f"Prometheus holds data from {_when(_parse(window['data_from']))} UTC only.")
    lines.append("SPENT and LEFT are shares of the window's error budget; OF PERIOD is the spend as a share of one "
                 "whole SLO period's budget.")
    lines.append("")
    rows = []
    for s in data["slos"]:
        head = [s["name"], f"{s['objective'] * 100:g} %"]
        if not s["traffic"]:
            rows.append(head + ["no traffic", "", "", "", ""])
            continue
        b = s["budget"]
        rows.append(head + [_pct(s["achieved"], 3), _pct(b["spent"]), _pct(b["remaining"]),
                            f"{_pct(b['spent_of_period'])} of {s['period']}", str(len(s["incidents"]))])
    lines.append(text_table(["SLO", "OBJECTIVE", "ACHIEVED", "SPENT", "LEFT", "OF PERIOD", "INCIDENTS"], rows))
    for s in data["slos"]:
        lines += ["", f"{s['name']}: {s['title']} (service {s['service']}, team {s['team']}, alert {s['alert']})"]
        if not s["traffic"]:
            lines.append("  no traffic in the window: nothing was measured")
            continue
        if s["worst_hours"]:
            hours = [[_span(h["start_unix"], h["end_unix"]), f"{h['burn_rate']:.1f}x", _pct(h["budget_spent"])]
                     for h in s["worst_hours"]]
            lines += ["  " + line for line in text_table(
                [f"WORST {_hour_word(window['hour_seconds']).upper()} (UTC)", "BURN RATE", "BUDGET SPENT"],
                hours).splitlines()]
        else:
            lines.append("  no error in the window: no budget spent")
        if s["incidents"]:
            incidents = [[i["name"], _when(i["start_unix"]), _when(i["end_unix"]), f"{i['minutes']:.0f}",
                          f"{i['burn_rate']:.1f}x", _pct(i["budget_spent"])] for i in s["incidents"]]
            lines += ["  " + line for line in text_table(
                ["INCIDENT", "FROM (UTC)", "TO", "MINUTES", "BURN RATE", "BUDGET SPENT"], incidents).splitlines()]
        if s["budget"]["spent"] > 0:
            lines.append(f"  spent outside every incident: {_pct(s['budget']['spent_without_incident'])}")
    return "\n".join(lines)


def _parse(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# --- HTML ----------------------------------------------------------------------------------------


def burn_down_png(result: SloResult, window: dict[str, Any]) -> str:
    """The SLO's burn-down as base64 PNG: the window's budget left over time, incidents shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    s = result.data

    def when(unix: Any) -> Any:
        return np.asarray(unix, dtype=float).astype(np.int64).astype("datetime64[s]")

    start, end = window["start_unix"], window["end_unix"]
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    try:
        ax.axhline(100, color="#bbbbbb", linewidth=0.8)
        ax.axhline(0, color="#c0392b", linewidth=0.8, linestyle="--", label="budget exhausted")
        if result.remaining is None:
            ax.text(0.5, 0.5, "no traffic in this window: nothing measured", transform=ax.transAxes,
                    ha="center", va="center", fontsize=11, color="#555555")
            ax.set_ylim(-10, 110)
        else:
            # A point's spend accrues until the next point: 100 % at the start, what is left at the end.
            xs = np.append(result.timestamps, end)
            ys = np.concatenate(([100.0], result.remaining * 100))
            if len(xs) > PLOT_POINTS:   # a line never needs more points than the picture has pixels
                keep = np.unique(np.linspace(0, len(xs) - 1, PLOT_POINTS).astype(int))
                xs, ys = xs[keep], ys[keep]
            ax.plot(when(xs), ys, color="#1f77b4", linewidth=1.5, label="error budget left")
            colours = plt.get_cmap("tab10").colors
            for n, (incident, info) in enumerate(zip(result.shaded, s["incidents"])):
                ax.axvspan(when(incident.start), when(incident.end), color=colours[(n + 1) % 10], alpha=0.25,
                           label=f"{incident.name} ({_pct(info['budget_spent'])})")
            ax.set_ylim(min(-5.0, float(ys.min()) - 5), 105)
        ax.set_xlim(when(start), when(end))
        ax.set_title(f"{s['title']} ({s['objective'] * 100:g} % objective): error budget left over the window")
        ax.set_xlabel("time (UTC)")
        ax.set_ylabel("budget left (% of the window's)")
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=7, framealpha=0.85)
        fig.subplots_adjust(left=0.09, right=0.96, top=0.9, bottom=0.17)
        out = io.BytesIO()
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return base64.b64encode(out.getvalue()).decode("ascii")


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.n{text-align:right}.muted{color:#666}img{max-width:100%}"""


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{html.escape(str(cell))}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: Report) -> str:
    data = report.data
    window = data["window"]
    e = html.escape
    summary = []
    for s in data["slos"]:
        if not s["traffic"]:
            summary.append([s["title"], f"{s['objective'] * 100:g} %", "no traffic", "", "", ""])
        else:
            b = s["budget"]
            summary.append([s["title"], f"{s['objective'] * 100:g} %", _pct(s["achieved"], 3), _pct(b["spent"]),
                            _pct(b["remaining"]), f"{_pct(b['spent_of_period'])} of {s['period']}"])
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>SLO report</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>SLO report, {e(_when(window['start_unix']))} to {e(_when(window['end_unix']))} UTC</h1>",
        f"<p>How much of each service level objective's error budget the window ({_days(window['days'])}) "
        "spent, and what spent it. The error budget is the share of requests allowed to fail (0.1 % for a 99.9 % "
        "objective). The window's budget is what the window may spend if it were the whole SLO period: "
        "100 % means it failed exactly as often as the objective allows, more means it failed more often. "
        "Each picture starts at 100 % of the window's budget and falls as errors spend it; shaded bands are "
        "the incidents (alerts that fired) that spent most of it.</p>",
        f"<p class=muted>Prometheus {e(data['prometheus'])}, {e(data['profile'])} profile, a point every "
        f"{window['step_seconds']} s; generated {e(data['generated_at'])}."
        + (f" Prometheus holds data from {e(window['data_from'])} only." if window["data_from"] else "") + "</p>",
        _table(["SLO", "objective", "achieved", "budget spent", "budget left", "of the period's budget"],
               summary, {1, 2, 3, 4, 5}),
    ]
    for result in report.slos:
        s = result.data
        parts.append(f"<h2>{e(s['title'])} <span class=muted>({e(s['name'])})</span></h2>")
        parts.append(f"<p class=muted>Service {e(s['service'])}, team {e(s['team'])}, alert {e(s['alert'])}, "
                     f"objective {s['objective'] * 100:g} % over {e(s['period'])}.</p>")
        parts.append(f"<img alt=\"error budget burn-down of {e(s['title'])}\" "
                     f"src=\"data:image/png;base64,{burn_down_png(result, window)}\">")
        if not s["traffic"]:
            parts.append("<p>No traffic in the window: nothing was measured.</p>")
            continue
        if s["worst_hours"]:
            parts.append(f"<h3>Worst {e(_hour_word(window['hour_seconds']))}</h3>")
            parts.append(_table(["UTC", "burn rate", "budget spent"],
                                [[_span(h["start_unix"], h["end_unix"]), f"{h['burn_rate']:.1f}x",
                                  _pct(h["budget_spent"])] for h in s["worst_hours"]], {1, 2}))
        if s["incidents"]:
            parts.append("<h3>Incidents that spent it</h3>")
            parts.append(_table(["incident", "source", "from (UTC)", "to", "minutes", "burn rate", "budget spent"],
                                [[i["name"], i["source"], _when(i["start_unix"]), _when(i["end_unix"]),
                                  f"{i['minutes']:.0f}", f"{i['burn_rate']:.1f}x", _pct(i["budget_spent"])]
                                 for i in s["incidents"]], {4, 5, 6}))
        parts.append(f"<p>Spent outside every incident: {_pct(s['budget']['spent_without_incident'])}.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
