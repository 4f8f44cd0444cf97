"""The deep checks of ``obslab status --verbose``: what "the lab is healthy" means beyond every
component answering its health probe.

One round (:func:`collect`) reads, with a timeout on every HTTP call and the calls in parallel:

- each component's readiness document (``/ready``: per-dependency checks; Prometheus' and
  Alertmanager's ``/-/ready`` text), shown, not judged: the component verdict stays its health
  probe (``NativeLab.statuses``), so the ML detectors, alive but stale without Prometheus, are
  judged as ``obslab status`` always judged them;
- the lab's Prometheus (found in the lab manifest, so a port offset is followed): every scrape
  target (health, last scrape age and duration, last error), every rule group (failing rules with
  their error, evaluation time against the interval), and its own counters through PromQL;
- the lab's Alertmanager (with the lab's basic auth): ``/api/v2/status`` (cluster, peers, uptime,
  version) and its ``/metrics`` notification counters by integration;
- the data directory: disk used (total and the largest subdirectories), free space on its filesystem.

A problem (it makes the exit status 1) is: a component unhealthy; a scrape target down; a rule
whose last evaluation failed; Prometheus failing to send or dropping alerts, or Alertmanager
failing a notification, in the last :data:`FAILURE_WINDOW_SECONDS` (``increase(counter[10m]) > 0``
on the lab's Prometheus: a counter that is non-zero since start is history, not an outage), not
counting the lab's first :data:`STARTUP_GRACE_SECONDS` (Prometheus and Alertmanager start in a
moment, the Python components take seconds to listen: alerts about the boot itself fail to reach
the alert-receiver until it does; ``obslab up`` judges that start-up by itself); an
Alertmanager cluster neither ``ready`` nor ``disabled`` (the native lab runs one instance, with
gossip off); less than ``min_free_percent`` free on the data directory's filesystem. Rule evaluation
failures in the window whose rules evaluate fine again are warnings: shown, not judged.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from obslab import conventions as c
from obslab import topology
from obslab.labapi import text_table

HTTP_TIMEOUT_SECONDS = 2.0
FAILURE_WINDOW_SECONDS = 600
STARTUP_GRACE_SECONDS = 120
DEFAULT_MIN_FREE_PERCENT = 5.0
TOP_DIRECTORIES = 5

# PromQL on the lab's Prometheus (which scrapes itself and Alertmanager): name -> (query, label);
# {window} is the range, e.g. 10m.
WINDOW_QUERIES: dict[str, tuple[str, str]] = {
    "rule_evaluation_failures": (
        "sum by (rule_group) (increase(prometheus_rule_evaluation_failures_total[{window}])) > 0",
        "rule_group"),
    "prometheus_notification_errors": (
        "sum by (alertmanager) (increase(prometheus_notifications_errors_total[{window}])) > 0",
        "alertmanager"),
    "prometheus_notifications_dropped": (
        "sum(increase(prometheus_notifications_dropped_total[{window}])) > 0", ""),
    "alertmanager_notifications_failed": (
        "sum by (integration) (increase(alertmanager_notifications_failed_total[{window}])) > 0",
        "integration"),
}


@dataclass
class Report:
    """One round of checks; :meth:`as_json` is what ``--verbose --json`` prints."""

    checked_at: float
    components: list[dict[str, Any]]
    prometheus: dict[str, Any]
    alertmanager: dict[str, Any]
    disk: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"components": self.components, "healthy": self.healthy, "problems": self.problems,
                "warnings": self.warnings, "checked_at": self.checked_at, "prometheus": self.prometheus,
                "alertmanager": self.alertmanager, "disk": self.disk}


# --- formatting ---------------------------------------------------------------------------------------

def age(seconds: float | None) -> str:
    """``12s ago``, ``3m ago``, ``2h ago``, ``4d ago``; ``never`` for None."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def size(count: float) -> str:
    """Bytes for people: ``512 B``, ``12.0 KiB``, ``1.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def parse_time(text: str | None) -> float | None:
    """Prometheus' and Alertmanager's RFC 3339 times (nanoseconds, ``Z`` or an offset) as a Unix
    time; None for the zero time Go prints for "never" and for anything unreadable."""
    if not text or text.startswith("0001-"):
        return None
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if match is None:
        return None
    base, fraction, zone = match.groups()
    iso = f"{base}.{(fraction or '0')[:6].ljust(6, '0')}{'+00:00' if zone == 'Z' else zone}"
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def short_error(text: str) -> str:
    """The end of a Go error chain: ``Get "http://...": dial tcp ...: connect: connection refused``
    -> ``connection refused``."""
    text = (text or "").strip()
    return text.rsplit(": ", 1)[-1] if ": " in text else text


def _count(value: float) -> str:
    """A counter's increase as a whole number (``increase()`` extrapolates: 23.2 failures were 23)."""
    return str(max(1, round(value))) if value > 0 else "0"


# --- HTTP ------------------------------------------------------------------------------------------

class _Failed(Exception):
    """A check's HTTP call failed; the message says how, in a few words."""


def _get(url: str, *, auth: tuple[str, str] | None = None, params: dict[str, str] | None = None,
         timeout: float = HTTP_TIMEOUT_SECONDS) -> requests.Response:
    session = requests.Session()
    session.trust_env = False     # loopback only; never through a proxy
    try:
        return session.get(url, auth=auth, params=params, timeout=timeout)
    except requests.ConnectionError:
        raise _Failed("not listening") from None
    except requests.Timeout:
        raise _Failed(f"no answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        raise _Failed(type(exc).__name__) from None
    finally:
        session.close()


def _json(url: str, **kwargs: Any) -> Any:
    response = _get(url, **kwargs)
    if response.status_code >= 400:
        raise _Failed(f"HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise _Failed("not JSON") from None


def _prometheus_api(base: str, path: str, **params: str) -> Any:
    body = _json(f"{base}/api/v1/{path}", params=params or None)
    if not isinstance(body, dict) or body.get("status") != "success":
        raise _Failed(f"refused: {body.get('error') if isinstance(body, dict) else body!r}")
    return body["data"]


# --- the checks ---------------------------------------------------------------------------------------

def readiness(name: str, url: str, health_url: str, auth: tuple[str, str] | None) -> dict[str, Any]:
    """What the component says about its dependencies: our components' ``/ready`` JSON (``status``,
    ``checks``, what they add), a third party's readiness text; ``error`` when it did not answer."""
    try:
        ours = topology.component(name).entry is not None
    except KeyError:
        ours = health_url.endswith("/ready")
    target = f"{url}/ready" if ours else health_url
    try:
        response = _get(target, auth=auth)
    except _Failed as exc:
        return {"url": target, "error": str(exc)}
    result: dict[str, Any] = {"url": target, "http_status": response.status_code}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        result.update({k: v for k, v in body.items() if k not in ("service", "version")})
    else:
        result["text"] = response.text.strip()[:200]
    return result


def window_text(seconds: int) -> str:
    """A PromQL range: ``10m``, ``95s``."""
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def failure_window(started_at: float | None, now: float) -> int:
    """The seconds of counter history judged: the last 10 minutes, not counting the lab's start-up
    (0: the lab started less than STARTUP_GRACE_SECONDS ago, nothing to judge yet)."""
    if started_at is None:
        return FAILURE_WINDOW_SECONDS
    return max(0, min(FAILURE_WINDOW_SECONDS, int(now - started_at - STARTUP_GRACE_SECONDS)))


def check_prometheus(base: str, now: float, window_seconds: int = FAILURE_WINDOW_SECONDS,
                     ) -> tuple[dict[str, Any], list[str], list[str]]:
    """(section, problems, warnings) from the lab's Prometheus at ``base``; the failure counters over
    the last ``window_seconds`` (0: not judged)."""
    section: dict[str, Any] = {"url": base}
    window_name = window_text(window_seconds) if window_seconds else ""
    queries = {name: query.format(window=window_name) for name, (query, _) in WINDOW_QUERIES.items()
               if window_seconds}
    problems: list[str] = []
    warnings: list[str] = []
    with ThreadPoolExecutor(max_workers=2 + len(queries)) as pool:
        targets_f = pool.submit(_prometheus_api, base, "targets", state="active")
        rules_f = pool.submit(_prometheus_api, base, "rules")
        window_f = {name: pool.submit(_prometheus_api, base, "query", query=query)
                    for name, query in queries.items()}

    try:
        active = targets_f.result()["activeTargets"]
    except (_Failed, KeyError, TypeError) as exc:
        problems.append(f"prometheus: cannot read scrape targets ({exc})")
        active = []
    else:
        if not active:
            # Its discovery hands the first targets over about five seconds after its start.
            warnings.append("prometheus: no scrape targets yet (a Prometheus that just started lists "
                            "them within seconds)")
    per_job: dict[str, int] = {}
    for item in active:
        job = item.get("labels", {}).get("job") or item.get("scrapePool", "?")
        per_job[job] = per_job.get(job, 0) + 1
    targets = []
    for item in active:
        labels = item.get("labels", {})
        job = labels.get("job") or item.get("scrapePool", "?")
        instance = labels.get("instance", "")
        last = parse_time(item.get("lastScrape"))
        target = {"job": job, "instance": instance, "health": item.get("health", "unknown"),
                  "last_scrape": last, "last_scrape_age_seconds": None if last is None else round(now - last, 3),
                  "last_scrape_duration_seconds": item.get("lastScrapeDuration"),
                  "last_error": item.get("lastError", "")}
        targets.append(target)
        if target["health"] == "down":
            name = job if per_job[job] == 1 else f"{job} {instance}"
            problems.append(f"target {name} down ({short_error(target['last_error']) or 'no error given'})")
    section["targets"] = sorted(targets, key=lambda t: (t["health"] == "up", t["job"], t["instance"]))

    try:
        raw_groups = rules_f.result()["groups"]
    except (_Failed, KeyError, TypeError) as exc:
        problems.append(f"prometheus: cannot read rules ({exc})")
        raw_groups = []
    groups = []
    for group in raw_groups:
        failing = [{"name": rule.get("name", "?"), "type": rule.get("type"), "health": rule.get("health"),
                    "last_error": rule.get("lastError", ""),
                    "last_evaluation": parse_time(rule.get("lastEvaluation"))}
                   for rule in group.get("rules", []) if rule.get("health") == "err"]
        entry = {"name": group.get("name", "?"), "file": group.get("file", ""), "rules": len(group.get("rules", [])),
                 "interval_seconds": group.get("interval"), "evaluation_seconds": group.get("evaluationTime"),
                 "last_evaluation": parse_time(group.get("lastEvaluation")), "failing": failing}
        groups.append(entry)
        if failing:
            plural = "rule" if len(failing) == 1 else "rules"
            problems.append(f"rule group {entry['name']}: {len(failing)} {plural} failing "
                            f"({short_error(failing[0]['last_error']) or 'no error given'})")
        interval, took = entry["interval_seconds"], entry["evaluation_seconds"]
        if isinstance(interval, (int, float)) and isinstance(took, (int, float)) and interval and took > interval:
            warnings.append(f"rule group {entry['name']} takes {took:.1f} s to evaluate, longer than its "
                            f"{interval:g} s interval (iterations are skipped)")
    section["rule_groups"] = groups

    window: dict[str, Any] = {"window": window_name or None, "window_seconds": window_seconds}
    for name, future in window_f.items():
        label = WINDOW_QUERIES[name][1]
        try:
            result = future.result()["result"]
        except (_Failed, KeyError, TypeError) as exc:
            window[name] = {"error": str(exc)}
            warnings.append(f"prometheus: cannot query {name.replace('_', ' ')} ({exc})")
            continue
        counts = {(item["metric"].get(label, "") if label else "all"): float(item["value"][1]) for item in result}
        window[name] = counts
        for key, value in sorted(counts.items()):
            where = "" if key == "all" else f" ({key})"
            if name == "rule_evaluation_failures":
                # Prometheus labels the counter "<rule file>;<group name>".
                group = key.rsplit(";", 1)[-1]
                if not any(g["name"] == group and g["failing"] for g in groups):
                    warnings.append(f"rule group {group}: {_count(value)} failed evaluations in the last "
                                    f"{window_name}, evaluating fine now")
            elif name == "prometheus_notification_errors":
                problems.append(f"prometheus failed {_count(value)} times to send alerts to Alertmanager{where} "
                                f"in the last {window_name}")
            elif name == "prometheus_notifications_dropped":
                problems.append(f"prometheus dropped {_count(value)} alerts in the last {window_name}")
            else:
                problems.append(f"alertmanager: {_count(value)} failed notifications{where} "
                                f"in the last {window_name}")
    section["recent_failures"] = window
    return section, problems, warnings


def _notification_counters(text: str) -> dict[str, dict[str, float]]:
    """integration -> {"sent": N, "failed": N} from Alertmanager's /metrics (summed over reasons)."""
    from prometheus_client.parser import text_string_to_metric_families

    counters: dict[str, dict[str, float]] = {}
    wanted = {"alertmanager_notifications_total": "sent", "alertmanager_notifications_failed_total": "failed"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                entry = counters.setdefault(sample.labels.get("integration", "?"), {"sent": 0.0, "failed": 0.0})
                entry[wanted[sample.name]] += sample.value
    return counters


def check_alertmanager(base: str, auth: tuple[str, str] | None, now: float) -> tuple[dict[str, Any], list[str]]:
    """(section, problems) from the lab's Alertmanager at ``base``."""
    section: dict[str, Any] = {"url": base}
    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        status_f = pool.submit(_json, f"{base}/api/v2/status", auth=auth)
        metrics_f = pool.submit(_get, f"{base}/metrics", auth=auth)
    try:
        status = status_f.result()
        cluster = status.get("cluster") or {}
        started = parse_time(status.get("uptime"))
        section.update({
            "cluster_status": cluster.get("status"),
            "cluster_name": cluster.get("name"),
            "peers": [peer.get("name") or peer.get("address") for peer in cluster.get("peers") or []],
            "started_at": started,
            "uptime_seconds": None if started is None else round(now - started, 3),
            "version": (status.get("versionInfo") or {}).get("version"),
        })
        if section["cluster_status"] not in ("ready", "disabled"):
            problems.append(f"alertmanager cluster {section['cluster_status'] or 'status unknown'}")
    except (_Failed, AttributeError) as exc:
        section["error"] = str(exc)
        problems.append(f"alertmanager: cannot read /api/v2/status ({exc})")
    try:
        response = metrics_f.result()
        if response.status_code != 200:
            raise _Failed(f"HTTP {response.status_code}")
        section["notifications_since_start"] = _notification_counters(response.text)
    except (_Failed, ValueError) as exc:
        section["notifications_since_start"] = {"error": str(exc)}
    return section, problems


def _disk_used(path: Path) -> int:
    """Bytes allocated under ``path`` (like ``du``: blocks, hard links once, symlinks not followed)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue     # gone meanwhile (a rotated log, a compacted block)
                    if (info.st_dev, info.st_ino) in seen:
                        continue
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError:
            continue
    return total


def check_disk(data_dir: Path, min_free_percent: float) -> tuple[dict[str, Any], list[str]]:
    """(section, problems): space used under ``data_dir``, its largest subdirectories, and the free
    space of its filesystem against ``min_free_percent``."""
    section: dict[str, Any] = {"path": str(data_dir), "min_free_percent": min_free_percent}
    problems: list[str] = []
    children = []
    try:
        entries = sorted(data_dir.iterdir())
    except OSError:
        entries = []
    for child in entries:
        try:
            if child.is_dir() and not child.is_symlink():
                children.append({"name": child.name, "bytes": _disk_used(child) + child.lstat().st_blocks * 512})
        except OSError:
            continue
    section["used_bytes"] = _disk_used(data_dir)
    section["top"] = sorted(children, key=lambda c: -c["bytes"])[:TOP_DIRECTORIES]
    try:
        usage = shutil.disk_usage(data_dir)
    except OSError as exc:
        problems.append(f"disk: cannot read the free space of {data_dir} ({exc.strerror})")
        return section, problems
    free_percent = 100.0 * usage.free / usage.total if usage.total else 0.0
    section.update({"filesystem_total_bytes": usage.total, "filesystem_free_bytes": usage.free,
                    "free_percent": round(free_percent, 2)})
    if free_percent < min_free_percent:
        problems.append(f"disk: {size(usage.free)} free on the data directory's filesystem "
                        f"({free_percent:.1f}% < {min_free_percent:g}%)")
    return section, problems


# --- one round -------------------------------------------------------------------------------------

def collect(lab: Any, *, min_free_percent: float = DEFAULT_MIN_FREE_PERCENT,
            clock: Callable[[], float] = time.time) -> Report:
    """Every check against the running ``lab`` (a :class:`~obslab.lab.native.NativeLab`)."""
    statuses = lab.statuses()
    manifest = {item.name: item for item in lab.manifest()}
    now = clock()
    healthy = {s.name: s.healthy for s in statuses}
    with ThreadPoolExecutor(max_workers=8) as pool:
        ready_f = {s.name: pool.submit(readiness, s.name, manifest[s.name].url, manifest[s.name].health_url,
                                       manifest[s.name].health_auth())
                   for s in statuses if s.name in manifest}
        prom = manifest.get(c.PROMETHEUS)
        window = failure_window(lab.started_at(), now)
        prom_f = (pool.submit(check_prometheus, prom.url, now, window)
                  if prom and healthy.get(prom.name) else None)
        am = manifest.get(c.ALERTMANAGER)
        am_f = (pool.submit(check_alertmanager, am.url, am.health_auth(), now)
                if am and healthy.get(am.name) else None)
        disk_f = pool.submit(check_disk, lab.data_dir, min_free_percent)

    problems = [f"component {s.name} unhealthy ({s.detail})" for s in statuses if not s.healthy]
    warnings: list[str] = []
    components = []
    for s in statuses:
        future = ready_f.get(s.name)
        components.append({"name": s.name, "url": s.url, "healthy": s.healthy, "detail": s.detail,
                           "readiness": future.result() if future else None})
    if prom is None:
        prometheus: dict[str, Any] = {"skipped": "not part of this lab (prometheus is not installed)"}
    elif prom_f is None:
        prometheus = {"url": prom.url, "skipped": "prometheus is not healthy"}
    else:
        prometheus, more, warned = prom_f.result()
        problems += more
        warnings += warned
    if am is None:
        alertmanager: dict[str, Any] = {"skipped": "not part of this lab (alertmanager is not installed)"}
    elif am_f is None:
        alertmanager = {"url": am.url, "skipped": "alertmanager is not healthy"}
    else:
        alertmanager, more = am_f.result()
        problems += more
    disk, more = disk_f.result()
    problems += more
    return Report(now, components, prometheus, alertmanager, disk, problems, warnings)


# --- text -------------------------------------------------------------------------------------------

def summary(report: Report) -> str:
    """The last line: ``HEALTHY: ...`` or ``UNHEALTHY: 2 problems: a; b``."""
    if report.problems:
        count = len(report.problems)
        return f"UNHEALTHY: {count} problem{'s' if count != 1 else ''}: {'; '.join(report.problems)}"
    targets = report.prometheus.get("targets")
    groups = report.prometheus.get("rule_groups")
    parts = [f"{len(report.components)} components healthy"]
    if targets is not None:
        parts.append(f"{len(targets)} targets up")
    if groups is not None:
        parts.append(f"{sum(g['rules'] for g in groups)} rules evaluating")
    if "filesystem_free_bytes" in report.disk:
        parts.append(f"{size(report.disk['filesystem_free_bytes'])} free")
    return "HEALTHY: " + ", ".join(parts)


def _readiness_text(item: dict[str, Any] | None) -> str:
    if not item:
        return "-"
    if "error" in item:
        return f"no answer ({item['error']})"
    if "checks" in item:
        checks = item.get("checks") or {}
        text = ", ".join(f"{name} {state}" for name, state in checks.items()) or "no dependencies"
        extra = [f"{k}={v}" for k, v in item.items()
                 if k not in ("url", "http_status", "status", "checks") and isinstance(v, (str, int, float, bool))]
        return f"{item.get('status', '?')}: {text}" + (f" ({', '.join(extra[:4])})" if extra else "")
    return f"HTTP {item.get('http_status')}: {item.get('text', '')}"


def render(report: Report) -> list[str]:
    """The sections of ``--verbose`` below the component table, and the summary line last."""
    now = report.checked_at
    lines = ["", "Readiness"]
    lines += ["  " + row for row in text_table(
        ["NAME", "READINESS"], [[comp["name"], _readiness_text(comp["readiness"])]
                                for comp in report.components]).splitlines()]

    prom = report.prometheus
    lines += ["", f"Scrape targets (Prometheus {prom.get('url', '')})".replace(" ()", "")]
    if "skipped" in prom:
        lines.append(f"  skipped: {prom['skipped']}")
    else:
        rows = [[t["job"], t["instance"], t["health"],
                 age(None if t["last_scrape"] is None else now - t["last_scrape"]),
                 "-" if t["last_scrape_duration_seconds"] is None
                 else f"{1000 * t['last_scrape_duration_seconds']:.0f} ms",
                 short_error(t["last_error"]) or "-"] for t in prom["targets"]]
        lines += ["  " + row for row in text_table(
            ["JOB", "INSTANCE", "HEALTH", "LAST SCRAPE", "DURATION", "ERROR"], rows).splitlines()]

        groups = prom["rule_groups"]
        failing = [(g, r) for g in groups for r in g["failing"]]
        timed = [g for g in groups if isinstance(g["evaluation_seconds"], (int, float))]
        slowest = max(timed, key=lambda g: g["evaluation_seconds"], default=None)
        headline = f"{len(groups)} groups, {sum(g['rules'] for g in groups)} rules"
        if slowest is not None:
            headline += (f"; slowest group {slowest['name']}: {1000 * slowest['evaluation_seconds']:.0f} ms"
                         f" every {slowest['interval_seconds']:g} s"
                         f", last {age(None if slowest['last_evaluation'] is None else now - slowest['last_evaluation'])}")
        lines += ["", f"Rules ({headline})"]
        if failing:
            lines += ["  " + row for row in text_table(["GROUP", "RULE", "LAST EVALUATION", "ERROR"], [
                [g["name"], r["name"], age(None if r["last_evaluation"] is None else now - r["last_evaluation"]),
                 r["last_error"] or "-"] for g, r in failing]).splitlines()]
        else:
            lines.append("  every rule evaluates without error")
        recent = prom["recent_failures"]
        parts = []
        for name in WINDOW_QUERIES if recent["window"] else ():
            value = recent.get(name)
            label = name.replace("_", " ")
            if isinstance(value, dict) and "error" in value:
                parts.append(f"{label}: unknown ({value['error']})")
            else:
                parts.append(f"{label}: {_count(sum((value or {}).values()))}")
        if recent["window"]:
            lines.append(f"  last {recent['window']}: " + ", ".join(parts))
        else:
            lines.append(f"  failure counters not judged yet: the lab started less than "
                         f"{STARTUP_GRACE_SECONDS // 60} minutes ago")

    am = report.alertmanager
    lines += ["", f"Alertmanager {am.get('url', '')}".rstrip()]
    if "skipped" in am:
        lines.append(f"  skipped: {am['skipped']}")
    else:
        if "error" in am:
            lines.append(f"  status: {am['error']}")
        else:
            started = am.get("started_at")
            lines.append(f"  version {am.get('version')}, cluster {am.get('cluster_status')}, "
                         f"{len(am.get('peers') or [])} peers, up "
                         f"{'unknown' if started is None else age(now - started).replace(' ago', '')}")
        counters = am.get("notifications_since_start") or {}
        if "error" in counters:
            lines.append(f"  notifications: unknown ({counters['error']})")
        else:
            text = "; ".join(f"{name} {_count(v['sent'])} sent, {_count(v['failed'])} failed"
                             for name, v in sorted(counters.items()) if v["sent"] or v["failed"]) or "none"
            lines.append(f"  notifications since start: {text}")

    disk = report.disk
    lines += ["", f"Disk ({disk['path']})"]
    top = ", ".join(f"{d['name']} {size(d['bytes'])}" for d in disk.get("top", []))
    lines.append(f"  {size(disk.get('used_bytes', 0))} used" + (f": {top}" if top else ""))
    if "filesystem_free_bytes" in disk:
        lines.append(f"  filesystem: {size(disk['filesystem_free_bytes'])} free of "
                     f"{size(disk['filesystem_total_bytes'])} ({disk['free_percent']:.0f}%; "
                     f"unhealthy below {disk['min_free_percent']:g}%)")
    if report.warnings:
        lines += ["", "Warnings"] + [f"  {w}" for w in report.warnings]
    lines += ["", summary(report)]
    return lines
