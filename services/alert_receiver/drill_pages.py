"""A drill report as one self-contained HTML page, and the list of reports.

:func:`render_report` turns the runner's report (JSON, see the drill runner) into a page with a
timeline picture (inline SVG: faults, alert states, notifications and key series on one time
axis), the expectation, quiet and diagnosis tables, unexpected alerts and problems.
:func:`render_index` lists reports, newest first, each linking to ``/drills/<run_id>``.

The pages load nothing and run nothing (inline CSS, no JavaScript, no external resource), so the
alert-receiver serves them under its script-free CSP and the runner can write them to a file.
Every value is escaped; every field may be missing or null (shown as "—"): a report of a run
that broke half-way still renders. Only the standard library is used: no Flask needed.

>>> page = render_report({"run_id": "r1", "title": "<b>x</b>", "passed": None})
>>> "&lt;b&gt;x&lt;/b&gt;" in page and "<svg" in page
True
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

__all__ = ["render_index", "render_report", "report_path", "NULL"]

NULL = "—"
DRILLS_PATH = "/drills"
RUNBOOKS_PATH = "/runbooks/"

# The alert-receiver's look (services/alert_receiver/pages.py, _STYLE), plus what a report needs.
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%;margin-bottom:1.2em}th,td{border-bottom:1px solid #ddd;
padding:.35em .5em;text-align:left;vertical-align:top}th{background:#f4f4f4}
th{white-space:nowrap}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.firing,.fail{color:#b00020;font-weight:600}.resolved,.pass{color:#2e7d32;font-weight:600}
.muted{color:#777}.unknown{color:#777;font-weight:600}
.badge{display:inline-block;padding:.15em .6em;border-radius:.3em;color:#fff;font-weight:600;
font-size:.9em;vertical-align:middle}.badge.pass{background:#2e7d32;color:#fff}
.badge.fail{background:#b00020;color:#fff}.badge.unknown{background:#777;color:#fff}
.story{max-width:60em;line-height:1.45;white-space:pre-wrap}
code{background:#f4f4f4;padding:0 .2em;word-break:break-all}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:.6em 0}
dl.meta dt{color:#777}dl.meta dd{margin:0}
.timeline{overflow-x:auto;margin:.6em 0 1.2em}nav{margin-bottom:1em}
"""

# --- values: every field defensively ----------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite number, else None (bools, strings, NaN and infinities are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _fmt(value: Any) -> str:
    number = _number(value)
    return NULL if number is None else f"{number:.1f}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in _items(value) if isinstance(item, dict)]


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _e(value: Any) -> str:
    return html.escape(_text(value), quote=True)


def _cell(value: Any) -> str:
    """Escaped text, or "—" for a missing value."""
    text = _text(value)
    return _e(text) if text else NULL


def _labels(value: Any) -> str:
    """Labels compactly: ``k=v, k2=v2`` (sorted), as plain text."""
    labels = _mapping(value)
    return ", ".join(f"{k}={_text(v)}" for k, v in sorted(labels.items(), key=lambda kv: str(kv[0])))


def _utc(epoch: Any) -> str:
    number = _number(epoch)
    if number is None:
        return NULL
    try:
        return datetime.fromtimestamp(number, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return NULL


def _verdict(passed: Any) -> tuple[str, str]:
    """(css class, word) of a pass/fail value: true, false, or anything else (not scored)."""
    if passed is True:
        return "pass", "PASS"
    if passed is False:
        return "fail", "FAIL"
    return "unknown", NULL


def _badge(passed: Any) -> str:
    css, word = _verdict(passed)
    word = {"pass": "PASSED", "fail": "FAILED"}.get(css, "NOT SCORED")
    return f'<span class="badge {css}">{word}</span>'


def _result(passed: Any) -> str:
    css, word = _verdict(passed)
    return f'<td class="{css}">{word}</td>'


def report_path(run_id: Any) -> str:
    """Where the alert-receiver serves a report: ``/drills/<run_id>`` (the id URL-quoted)."""
    return f"{DRILLS_PATH}/{quote(_text(run_id), safe=':')}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- the timeline picture -----------------------------------------------------------------------

_WIDTH = 980
_LEFT = 270          # the row labels
_RIGHT = 24
_ROW = 22            # a fault or alert row
_SERIES = 64         # a series' small chart
_AXIS = 34           # the x axis and its labels
_TOP = 26            # the markers' captions above the rows
_PLOT = _WIDTH - _LEFT - _RIGHT
_PENDING = "#f3c98b"
_FIRING = "#b00020"
_RESOLVED = "#2e7d32"
_FAULT = "#f0a04b"
_LINE = "#1f5fa8"


def _nice_step(span: float, ticks: int = 8) -> float:
    raw = span / max(ticks, 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _fault_end(report: dict[str, Any], faults: list[dict[str, Any]]) -> float | None:
    start, end = _number(report.get("fault_started_at")), _number(report.get("fault_ended_at"))
    if start is not None and end is not None:
        return end - start
    ends = [_number(f.get("end_s")) for f in faults]
    known = [x for x in ends if x is not None]
    return max(known) if known else None


def _extent(report: dict[str, Any], faults, alerts, notifications, series, fault_end) -> tuple[float, float]:
    xs: list[float] = [0.0]
    if fault_end is not None:
        xs.append(fault_end)
    origin = _number(report.get("fault_started_at"))
    if origin is not None:
        for key in ("started_at", "ended_at"):
            at = _number(report.get(key))
            if at is not None:
                xs.append(at - origin)
    for fault in faults:
        xs += [x for x in (_number(fault.get("start_s")), _number(fault.get("end_s"))) if x is not None]
    for alert in alerts:
        xs += [x for x in (_number(alert.get("from_s")), _number(alert.get("to_s"))) if x is not None]
    xs += [x for x in (_number(n.get("at_s")) for n in notifications) if x is not None]
    for s in series:
        for point in _items(s.get("points")):
            if isinstance(point, (list, tuple)) and point:
                x = _number(point[0])
                if x is not None:
                    xs.append(x)
    low, high = min(xs), max(xs)
    if high - low < 1e-9:
        low, high = low - 10, high + 10
    pad = (high - low) * 0.02
    return low - pad, high + pad


def _alert_rows(alerts: list[dict[str, Any]], notifications: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(alert, labels text) of each row, in order of first appearance; an alert only notified
    (never seen in Prometheus's states) still gets a row for its markers."""
    rows: list[tuple[str, str]] = []
    for alert in alerts:
        key = (_text(alert.get("alert")), _labels(alert.get("labels")))
        if key not in rows:
            rows.append(key)
    for note in notifications:
        name = _text(note.get("alert"))
        if not any(row[0] == name for row in rows):
            rows.append((name, ""))
    return rows


def _polyline_segments(points: list[Any]) -> list[list[tuple[float, float]]]:
    """The series' points split where a value is missing (a gap, not a line through it)."""
    segments: list[list[tuple[float, float]]] = [[]]
    for point in points:
        x = _number(point[0]) if isinstance(point, (list, tuple)) and len(point) >= 2 else None
        y = _number(point[1]) if x is not None else None
        if x is None or y is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((x, y))
    return [s for s in segments if s]


def render_timeline(report: dict[str, Any]) -> str:
    """The timeline picture as inline SVG; x = seconds from the fault's start."""
    timeline = _mapping(report.get("timeline"))
    faults = _dicts(report.get("faults"))
    alerts = _dicts(timeline.get("alerts"))
    notifications = _dicts(timeline.get("notifications"))
    series = _dicts(timeline.get("series"))
    fault_end = _fault_end(report, faults)
    low, high = _extent(report, faults, alerts, notifications, series, fault_end)

    def x_of(seconds: float) -> float:
        return _LEFT + (seconds - low) / (high - low) * _PLOT

    def clamp(seconds: float | None, default: float) -> float:
        return default if seconds is None else min(max(seconds, low), high)

    rows = _alert_rows(alerts, notifications)
    height = _TOP + _ROW * (len(faults) + len(rows)) + _SERIES * len(series) + _AXIS + 18
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline-svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="drill timeline" '
        'font-family="system-ui,sans-serif" font-size="11">',
        "<title>Drill timeline: seconds from the fault's start</title>",
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_PLOT}" height="{height - _TOP - _AXIS - 18}" fill="#fafafa"/>',
    ]
    body_top, body_bottom = _TOP, height - _AXIS - 18

    # Fault windows: shaded across the whole picture, then a labelled bar in the fault's row.
    y = _TOP
    for fault in faults:
        start = clamp(_number(fault.get("start_s")), low)
        end = clamp(_number(fault.get("end_s")), high)
        label = f"{_text(fault.get('kind')) or 'fault'} → {_text(fault.get('target')) or '?'}"
        params = _mapping(fault.get("params"))
        detail = label + (f" ({', '.join(f'{k}={_text(v)}' for k, v in params.items())})" if params else "")
        x0, x1 = x_of(start), x_of(max(end, start))
        parts.append(f'<rect class="fault-window" x="{x0:.1f}" y="{body_top}" width="{max(x1 - x0, 1):.1f}" '
                     f'height="{body_bottom - body_top}" fill="{_FAULT}" fill-opacity="0.12"/>')
        parts.append(f'<g class="fault"><title>{_e(detail)}: {_fmt(fault.get("start_s"))} s to '
                     f'{_fmt(fault.get("end_s"))} s</title>'
                     f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 1):.1f}" height="{_ROW - 8}" '
                     f'fill="{_FAULT}" fill-opacity="0.55"/>'
                     f'<text x="{_LEFT - 6}" y="{y + _ROW / 2 + 4}" text-anchor="end">{_e(_short(label, 40))}</text></g>')
        y += _ROW

    # One row per alert (and label set): pending light, firing strong; notification markers.
    row_y: dict[tuple[str, str], float] = {}
    for name, labels in rows:
        row_y[(name, labels)] = y
        caption = name + (f" {{{labels}}}" if labels else "")
        parts.append(f'<g class="alert-row"><title>{_e(caption)}</title>'
                     f'<line x1="{_LEFT}" x2="{_LEFT + _PLOT}" y1="{y + _ROW / 2}" y2="{y + _ROW / 2}" '
                     f'stroke="#e4e4e4"/><text x="{_LEFT - 6}" y="{y + _ROW / 2 + 4}" text-anchor="end">'
                     f'{_e(_short(caption, 40))}</text></g>')
        y += _ROW
    for alert in alerts:
        key = (_text(alert.get("alert")), _labels(alert.get("labels")))
        start = _number(alert.get("from_s"))
        if start is None or key not in row_y:
            continue
        end = clamp(_number(alert.get("to_s")), high)
        start = clamp(start, low)
        state = _text(alert.get("state"))
        firing = state == "firing"
        x0, x1 = x_of(start), x_of(max(end, start))
        top = row_y[key] + (4 if firing else 6)
        parts.append(f'<rect class="state {_e(state or "unknown")}" x="{x0:.1f}" y="{top}" '
                     f'width="{max(x1 - x0, 1.5):.1f}" height="{_ROW - (8 if firing else 12)}" '
                     f'fill="{_FIRING if firing else _PENDING}"><title>{_e(key[0])} {_e(state or "?")} '
                     f'from {_fmt(alert.get("from_s"))} s to {_fmt(alert.get("to_s"))} s</title></rect>')
    for note in notifications:
        at = _number(note.get("at_s"))
        name = _text(note.get("alert"))
        row = next((yy for (n, _), yy in row_y.items() if n == name), None)
        if at is None or row is None:
            continue
        cx, cy = x_of(clamp(at, low)), row + _ROW / 2
        status = _text(note.get("status"))
        tip = (f"{status or 'notification'} notification of {name} at {_text(note.get('receiver')) or '?'}, "
               f"{_fmt(at)} s")
        if status == "resolved":
            shape = (f'<polygon points="{cx:.1f},{cy - 7:.1f} {cx + 6:.1f},{cy:.1f} {cx:.1f},{cy + 7:.1f} '
                     f'{cx - 6:.1f},{cy:.1f}" fill="#fff" stroke="{_RESOLVED}" stroke-width="2"/>')
        else:
            shape = (f'<polygon points="{cx - 6:.1f},{cy - 8:.1f} {cx + 6:.1f},{cy - 8:.1f} {cx:.1f},{cy + 3:.1f}" '
                     f'fill="#222" stroke="#fff" stroke-width="1"/>')
        parts.append(f'<g class="notification {_e(status or "unknown")}"><title>{_e(tip)}</title>{shape}</g>')

    # Each key series as a small line chart on the same x axis.
    for s in series:
        segments = _polyline_segments(_items(s.get("points")))
        ys = [p[1] for seg in segments for p in seg]
        y_low, y_high = (min(ys + [0.0]), max(ys + [0.0])) if ys else (0.0, 1.0)
        if y_high - y_low < 1e-12:
            y_high = y_low + 1.0
        top, bottom = y + 6, y + _SERIES - 8
        name = _text(s.get("name")) or "series"
        parts.append(f'<g class="series"><title>{_e(name)}: {_e(_text(s.get("query")))}</title>'
                     f'<line x1="{_LEFT}" x2="{_LEFT + _PLOT}" y1="{bottom}" y2="{bottom}" stroke="#ccc"/>'
                     f'<text x="{_LEFT - 6}" y="{y + _SERIES / 2}" text-anchor="end">{_e(_short(name, 40))}</text>'
                     f'<text x="{_LEFT - 6}" y="{y + _SERIES / 2 + 13}" text-anchor="end" fill="#777">'
                     f'{_fmt(y_low)} … {_fmt(y_high)}</text>')
        for seg in segments:
            coords = " ".join(
                f"{x_of(clamp(px, low)):.1f},{bottom - (py - y_low) / (y_high - y_low) * (bottom - top):.1f}"
                for px, py in seg)
            if len(seg) == 1:
                cx, cy = coords.split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{_LINE}"/>')
            else:
                parts.append(f'<polyline points="{coords}" fill="none" stroke="{_LINE}" stroke-width="1.5"/>')
        if not segments:
            parts.append(f'<text x="{_LEFT + 6}" y="{y + _SERIES / 2}" fill="#777">no data</text>')
        parts.append("</g>")
        y += _SERIES

    # The x axis, then the fault's start and end across everything.
    axis_y = body_bottom
    parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + _PLOT}" y1="{axis_y}" y2="{axis_y}" stroke="#555"/>')
    step = _nice_step(high - low)
    tick = math.ceil(low / step) * step
    while tick <= high + 1e-9:
        tx = x_of(tick)
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#555"/>'
                     f'<text x="{tx:.1f}" y="{axis_y + 16}" text-anchor="middle">{tick:g}</text>')
        tick += step
    parts.append(f'<text x="{_LEFT + _PLOT / 2}" y="{axis_y + 30}" text-anchor="middle" fill="#777">'
                 "seconds from the fault's start</text>")
    for at, caption in ((0.0, "fault start"), (fault_end, "fault end")):
        if at is None or not low <= at <= high:
            continue
        vx = x_of(at)
        parts.append(f'<g class="marker"><line x1="{vx:.1f}" x2="{vx:.1f}" y1="{body_top - 4}" y2="{axis_y}" '
                     f'stroke="#222" stroke-dasharray="4 3"/><text x="{vx:.1f}" y="{body_top - 8}" '
                     f'text-anchor="middle">{caption}</text></g>')
    parts.append("</svg>")
    legend = (f'<p class="muted">Bars: <span style="color:{_PENDING}">■</span> pending, '
              f'<span style="color:{_FIRING}">■</span> firing; ▼ firing notification, '
              f'<span style="color:{_RESOLVED}">◇</span> resolved notification (hover for the receiver); '
              f'<span style="color:{_FAULT}">■</span> fault window.</p>')
    return f'<div class="timeline">{"".join(parts)}</div>{legend}'


# --- the tables -----------------------------------------------------------------------------------


def _table(headers: Iterable[str], rows: list[str], empty: str) -> str:
    heads = list(headers)
    head = "".join(f'<th class="num">{_e(h[1:])}</th>' if h.startswith("#") else f"<th>{_e(h)}</th>"
                   for h in heads)
    body = "".join(rows) or f'<tr><td colspan="{len(heads)}" class="muted">{_e(empty)}</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num_cell(value: Any) -> str:
    return f'<td class="num">{_fmt(value)}</td>'


def _ratio(notified: Any, floor: Any) -> str:
    a, b = _number(notified), _number(floor)
    return f"{a / b:.1f}×" if a is not None and b is not None and b > 0 else NULL


def _expectation_rows(report: dict[str, Any]) -> list[str]:
    rows = []
    for a in _dicts(report.get("alerts")):
        resolved = _fmt(a.get("resolved_seconds"))
        if _number(a.get("resolve_deadline_seconds")) is not None:
            resolved += f' <span class="muted">≤ {_fmt(a.get("resolve_deadline_seconds"))}</span>'
        rows.append(
            f'<tr class="expectation"><td>{_cell(a.get("alert"))}</td><td>{_cell(_labels(a.get("labels")))}</td>'
            f'<td>{_cell(a.get("receiver"))}</td>{_num_cell(a.get("fired_seconds"))}'
            f'{_num_cell(a.get("notified_seconds"))}{_num_cell(a.get("floor_seconds"))}'
            f'<td class="num">{_ratio(a.get("notified_seconds"), a.get("floor_seconds"))}</td>'
            f'{_num_cell(a.get("deadline_seconds"))}<td class="num">{resolved}</td>'
            f'{_result(a.get("passed"))}<td>{_e(a.get("why"))}</td></tr>')
    return rows


def _quiet_rows(report: dict[str, Any]) -> list[str]:
    rows = []
    for q in _dicts(report.get("quiet")):
        inhibited = q.get("inhibited_ok")
        shown = "yes" if inhibited is True else "no" if inhibited is False else NULL
        rows.append(f'<tr class="quiet"><td>{_cell(q.get("alert"))}</td><td>{_cell(_labels(q.get("labels")))}</td>'
                    f'<td>{shown}</td>{_result(q.get("passed"))}<td>{_e(q.get("why"))}</td></tr>')
    return rows


def _runbook_cell(name: Any) -> str:
    text = _text(name)
    # An alert's runbook is served beside the reports (alert-receiver): link plain names only.
    if text and text.isascii() and text.isalnum():
        return f'<td><a href="{_e(RUNBOOKS_PATH + text)}.md">{_e(text)}</a></td>'
    return f"<td>{_cell(text)}</td>"


def _diagnose_rows(report: dict[str, Any]) -> list[str]:
    rows = []
    for d in _dicts(report.get("diagnose")):
        query = _text(d.get("query"))
        rows.append(f'<tr class="diagnose">{_runbook_cell(d.get("runbook"))}'
                    f'<td>{f"<code>{_e(query)}</code>" if query else NULL}</td>'
                    f'<td><code>{_cell(d.get("condition"))}</code></td>{_num_cell(d.get("before"))}'
                    f'{_num_cell(d.get("during"))}{_result(d.get("passed"))}</tr>')
    return rows


def _bullets(values: Any, empty: str, css: str) -> str:
    items = [v for v in _items(values) if v is not None and _text(v)]
    if not items:
        return f'<p class="muted">{_e(empty)}</p>'
    return f'<ul class="{css}">' + "".join(f"<li>{_e(v)}</li>" for v in items) + "</ul>"


def _document(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{_e(title)}</title><style>{_STYLE}</style></head><body>
{body}</body></html>
"""


# --- the pages --------------------------------------------------------------------------------------


def render_report(report: dict[str, Any]) -> str:
    """One drill run's report as a self-contained HTML page."""
    report = _mapping(report)
    run_id = _text(report.get("run_id"))
    name = _text(report.get("name"))
    title = _text(report.get("title")) or name or run_id or "drill report"
    origin = _number(report.get("fault_started_at"))
    window = NULL
    if origin is not None and _number(report.get("fault_ended_at")) is not None:
        window = f"{_number(report.get('fault_ended_at')) - origin:.1f} s"
    json_link = (f' &middot; <a href="/api/v1{_e(report_path(run_id))}">JSON</a>' if run_id else "")
    meta = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in (
        ("drill", _cell(name)), ("run", _cell(run_id)), ("profile", _cell(report.get("profile"))),
        ("cause", _cell(report.get("cause"))), ("started", _e(_utc(report.get("started_at")))),
        ("fault started", _e(_utc(report.get("fault_started_at")))), ("fault lasted", _e(window)),
        ("ended", _e(_utc(report.get("ended_at")))),
    ))
    story = _text(report.get("story"))
    body = f"""<nav><a href="{DRILLS_PATH}">all drill reports</a> &middot; <a href="/">notifications</a>{json_link}</nav>
<h1>{_e(title)} {_badge(report.get("passed"))}</h1>
<dl class="meta">{meta}</dl>
{f'<p class="story">{_e(story)}</p>' if story else ''}
<h2>Timeline</h2>
{render_timeline(report)}
<h2>Expected alerts</h2>
{_table(["alert", "labels", "receiver", "#fired s", "#notified s", "#floor s", "#notified/floor",
         "#deadline s", "#resolved s", "result", "why"], _expectation_rows(report), "no expectations")}
<h2>Alerts that must stay quiet</h2>
{_table(["alert", "labels", "inhibited ok", "result", "why"], _quiet_rows(report), "none")}
<h2>Diagnosis queries</h2>
{_table(["runbook", "query", "condition", "#before", "#during", "result"], _diagnose_rows(report), "none")}
<h2>Unexpected alerts</h2>
{_bullets(report.get("unexpected"), "none", "unexpected")}
<h2>Problems</h2>
{_bullets(report.get("problems"), "none", "problems")}
"""
    return _document(f"{title} - drill {run_id}".strip(), body)


def _newest_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(row: dict[str, Any]) -> tuple[int, float]:
        started = _number(row.get("started_at"))
        return (started is not None, started or 0.0)

    return sorted(rows, key=key, reverse=True)


def render_index(rows: list[dict[str, Any]]) -> str:
    """The list of drill reports, newest first; each links to ``/drills/<run_id>``."""
    lines = []
    for row in _newest_first(_dicts(rows)):
        run_id = _text(row.get("run_id"))
        title = _text(row.get("title")) or _text(row.get("name")) or run_id
        link = f'<a href="{_e(report_path(run_id))}">{_e(title)}</a>' if run_id else _cell(title)
        lines.append(f'<tr class="drill"><td>{_e(_utc(row.get("started_at")))}</td><td>{_cell(row.get("name"))}</td>'
                     f'<td>{link}</td><td>{_cell(row.get("profile"))}</td><td>{_badge(row.get("passed"))}</td>'
                     f'<td class="muted">{_cell(run_id)}</td></tr>')
    body = f"""<nav><a href="/">notifications</a> &middot; <a href="/api/v1/drills">JSON</a></nav>
<h1>Drill reports</h1>
<p class="muted">Newest first. A report is posted by <code>obslab drill run NAME</code>.</p>
{_table(["started", "drill", "title", "profile", "result", "run"], lines, "no drill reports yet")}
"""
    return _document("Drill reports", body)
