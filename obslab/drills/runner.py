"""Running drills against a live lab: inject, watch, score, report.

One drill run goes through four phases, each driven by a poll of the lab about once a second:

1. **calm**: wait until nothing the drill expects or must keep quiet is pending or firing, and
   Alertmanager has delivered the resolution of the expected alerts it last sent, so a leftover
   of an earlier incident cannot pass (or fail) this one. The diagnosis queries are
   read here: they must not show the cause yet.
2. **running**: the timeline's steps start at their offsets; every poll records the alerts
   Prometheus holds (pending, firing), the notifications the alert-receiver got, and, every few
   seconds, the diagnosis queries. A step ends at its duration, or earlier once every
   expectation was met and Alertmanager had time to deliver what it should hold back (a
   group_wait and two group intervals), or when the last deadline has passed.
3. **recovering**: the ``resolve`` alerts must stop firing and their resolved notification
   arrive within their deadlines.
4. **done**: the result, written as JSON and HTML and posted to the alert-receiver.

Several drills can run at once (``--parallel``) when they cannot disturb each other: no shared
target, no alert that one causes and the other expects or keeps quiet, and none touching the
whole lab (the gateway, Prometheus, Alertmanager).

Every fault carries a TTL covering its step, so a drill killed outright leaves nothing behind
for long; an interrupted drill clears its faults and restarts what it stopped on the way out,
and the next drill command repairs what a crashed one left (``active.json``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obslab import conventions as c
from obslab import topology
from obslab.drills.catalog import DrillCatalog, floor_seconds, matching_rules, receivers_for
from obslab.drills.lab import DrillError, Lab
from obslab.drills.model import STOP, Drill, Expect, Step, timing_seconds

POLL_SECONDS = 1.0
DIAGNOSE_EVERY_SECONDS = 3.0
ALERTMANAGER_EVERY_SECONDS = 3.0
DEADMAN_MISSED_BEATS = 2
# Without these no drill can be observed: a drill that stops one runs alone.
OBSERVERS = frozenset({c.PROMETHEUS, c.ALERTMANAGER, c.ALERT_RECEIVER})
# Every banking journey passes these: a drill that acts on one runs beside IIS drills only.
BANK_WIDE = frozenset({c.GATEWAY, c.LOAD_GENERATOR})
# An SLO alert's window pair: the same incident whichever pair fires.
_WINDOW_LABELS = frozenset({c.L_LONG_WINDOW, "short_window"})
_SITE_OF = {name: site.site for site in c.IIS_SITES for name in (site.app_pool, site.app_name)}
_SITES = frozenset(site.site for site in c.IIS_SITES)
# Where a target's faults show: an IIS app or app pool at its site, the simulated card processor
# (not a process) at payments, which calls it.
_PLACE_OF = {**_SITE_OF, c.CARD_PROCESSOR: c.PAYMENTS}


def _callers(service: str) -> set[str]:
    """Every service that calls ``service``, directly or through others (the call graph of
    obslab/topology.py), the entry point aside: every journey passes it (see BANK_WIDE)."""
    found: set[str] = set()
    frontier = {service}
    while frontier:
        frontier = {caller for caller in c.BANKING_SERVICES if caller not in BANK_WIDE and caller not in found
                    and set(topology.service_peers(caller)) & frontier}
        found |= frontier
    return found
# A fault outlives its planned end by this much at most if the CLI dies without clearing it.
TTL_MARGIN_SECONDS = 30


def _matches(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _show(labels: dict[str, str], *, skip: Iterable[str] = ("alertname",)) -> str:
    shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in skip
                     and k not in (c.L_SEVERITY, c.L_TEAM))
    return f"{{{shown}}}" if shown else ""


def _epoch(text: str | None) -> float | None:
    """RFC 3339 from Prometheus or Alertmanager (nanoseconds allowed) -> epoch seconds."""
    if not text:
        return None
    from datetime import datetime

    head, _, rest = text.rstrip("Z").partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    try:
        moment = datetime.fromisoformat(head + (f".{fraction}" if fraction else "") + "+00:00")
    except ValueError:
        return None
    return moment.timestamp()


# Labels every alert of the lab carries, or that say nothing a reader of one drill needs.
_NOISE_LABELS = frozenset({"alertname", c.L_SEVERITY, c.L_TEAM, "instance", "job", "tier", "lab", "profile",
                           "runtime", "short_window", c.L_SLO})


def _shown_labels(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k not in _NOISE_LABELS}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# --- what the lab shows, once per poll, shared by every drill running ---------------------------

@dataclass
class Snapshot:
    at: float
    alerts: list[dict]                     # Prometheus: labels, state, activeAt
    notifications: list[dict]              # the receiver's, newest first
    alertmanager: list[dict] | None = None  # Alertmanager's alerts (every few polls)
    errors: list[str] = field(default_factory=list)


def take_snapshot(lab: Lab, *, with_alertmanager: bool) -> Snapshot:
    snap = Snapshot(time.time(), [], [])
    for name, read in (("alerts", lab.prometheus_alerts), ("notifications", lab.notifications)):
        try:
            setattr(snap, name, read())
        except DrillError as exc:
            snap.errors.append(str(exc))   # Prometheus stopped by a drill: nothing to see, not a failure
    if with_alertmanager:
        try:
            snap.alertmanager = lab.alertmanager_alerts()
        except DrillError:
            snap.alertmanager = None   # optional: held-back checks fall back to deliveries alone
    return snap


def _notified_alerts(snapshot: Snapshot, since: float) -> Iterable[tuple[dict, dict]]:
    """(notification, alert) pairs received at or after ``since``."""
    for note in snapshot.notifications:
        if note.get("received_at", 0) >= since:
            for alert in note.get("alerts", []):
                yield note, alert


def _held_by(alertmanager: list[dict], name: str, labels: dict[str, str]) -> set[str]:
    """Why Alertmanager suppresses alert ``name``: "inhibited by <alert>" or "silenced"."""
    names = {a.get("fingerprint"): a["labels"].get("alertname", "?") for a in alertmanager}
    out = set()
    for alert in alertmanager:
        if alert["labels"].get("alertname") != name or not _matches(alert["labels"], labels):
            continue
        status = alert.get("status", {})
        out |= {f"inhibited by {names.get(fp, fp)}" for fp in status.get("inhibitedBy") or ()}
        if status.get("silencedBy"):
            out.add("silenced")
    return out


# --- one drill ------------------------------------------------------------------------------------

@dataclass
class StepState:
    step: Step
    start_s: float
    duration_s: float
    started_at: float | None = None
    ended_at: float | None = None
    fault_id: str | None = None


@dataclass
class ExpectState:
    expect: Expect
    floor_s: float
    deadline_s: float
    fired_at: float | None = None
    notified_at: float | None = None
    elsewhere: set[str] = field(default_factory=set)       # receivers it reached instead
    held_by: set[str] = field(default_factory=set)         # what Alertmanager held it back with
    last_beat: float | None = None                         # absent: the last heartbeat seen
    origin_s: float = 0.0                                  # the causing step's offset (actual once started)
    period_s: float = 0.0                                  # absent: when the switch trips after a beat

    def since_cause(self, seconds: float | None) -> float | None:
        return None if seconds is None else seconds - self.origin_s


class DrillRun:
    """One drill's phases, advanced by :meth:`tick` with each snapshot."""

    def __init__(self, drill: Drill, catalog: DrillCatalog, lab: Lab, *, run_id: str,
                 say: Callable[[str], None] = print, calm_timeout_s: float | None = None) -> None:
        self.drill, self.catalog, self.lab, self.run_id, self.say = drill, catalog, lab, run_id, say
        profile = lab.profile
        self.profile = profile
        self.steps = [StepState(s, timing_seconds(s.start, profile), timing_seconds(s.duration, profile))
                      for s in drill.timeline]
        self.expects = [ExpectState(e, floor_seconds(catalog.rules, e, profile), timing_seconds(e.within, profile),
                                    origin_s=self.steps[e.after].start_s)
                        for e in drill.expect]
        for state in self.expects:
            if state.expect.absent:
                state.floor_s = state.period_s = float(DEADMAN_MISSED_BEATS * profile.watchdog_repeat_s)
        self.resolve_deadlines = [timing_seconds(r.within, profile) for r in drill.resolve]
        self.resolved_at: list[float | None] = [None] * len(drill.resolve)
        self.resolve_waiting: list[str] = [""] * len(drill.resolve)
        # Alertmanager holds an inhibited alert back for good only if it stays held past its
        # first possible delivery: a group_wait and two group intervals after it fires.
        self.settle_s = profile.group_wait_s + 2 * profile.group_interval_s \
            if any(q.inhibited for q in drill.quiet) else 0
        # Long enough for an alert to flap back: a few Alertmanager cycles and rule evaluations.
        self.quiet_gap_s = max(3 * profile.group_interval_s, 15 * profile.evaluation_s)
        self.calm_timeout_s = calm_timeout_s if calm_timeout_s is not None else max(
            300.0, 3 * profile.group_interval_s + 6 * profile.evaluation_s)
        self.phase = "calm"
        self.created = time.time()
        self.started_at = time.time()
        self.t0: float | None = None
        self.te: float | None = None
        self.met_at: float | None = None
        self.finished_at: float | None = None
        self.problems: list[str] = []
        self.baseline: set[tuple[str, tuple]] = set()
        self.quiet_fired: list[float | None] = [None] * len(drill.quiet)
        self.quiet_notified: list[str | None] = [None] * len(drill.quiet)
        self.quiet_held: list[bool] = [False] * len(drill.quiet)
        self.diag_before: list[float | None] = [None] * len(drill.diagnose)
        self.diag_during: list[float | None] = [None] * len(drill.diagnose)
        self.diag_seen: list[bool] = [False] * len(drill.diagnose)
        self.diag_last = 0.0
        self._calm_diagnosis: list[str] = []
        self.series: list[list[list[float]]] = [[] for _ in drill.diagnose]
        self.intervals: dict[tuple[str, tuple, str], list[list[float]]] = {}
        self.interval_labels: dict[tuple[str, tuple], dict[str, str]] = {}
        self.unexpected: dict[tuple[str, tuple], dict[str, str]] = {}
        self.partners: list[DrillRun] = []   # drills running beside this one
        self.stopped: list[str] = []
        self.blocked_by = ""
        self.notes: list[str] = []

    # --- bookkeeping --------------------------------------------------------------------------------

    @property
    def exclusive(self) -> bool:
        """Stops what every drill needs to be observed (Prometheus, Alertmanager, the receiver)."""
        return any(s.target in OBSERVERS for s in self.drill.timeline)

    @property
    def bank_wide(self) -> bool:
        """Touches every banking journey (the gateway, all traffic): only the IIS estate may
        run beside it."""
        return any(s.target in BANK_WIDE for s in self.drill.timeline)

    def disturbance(self) -> int:
        """0: local to its target; 1: floods or stops the gateway; 2: stops what observes the lab."""
        if self.exclusive:
            return 2
        floods = {name for name, _ in self.claims()} & set(self.catalog.rules.floods())
        return 1 if self.bank_wide or floods else 0

    @property
    def iis_only(self) -> bool:
        return all(s.target in _SITE_OF or s.target in _SITES for s in self.drill.timeline)

    def places(self) -> set[str]:
        """Where the drill's steps act: a target, with an IIS app or app pool read as its site and
        the simulated card processor as payments, which calls it."""
        return {_PLACE_OF.get(s.target, s.target) for s in self.drill.timeline}

    def reach(self) -> set[str]:
        """Where the drill's faults show: its places and the services that call them."""
        places = self.places()
        return places.union(*(_callers(place) for place in places))

    def alert_services(self) -> set[str]:
        """The services of the alerts this drill must see or must not see."""
        out = set()
        for name, labels in self.claims() + self.watches():
            out |= {labels.get(c.L_SERVICE, rule.service) for rule in matching_rules(self.catalog.rules, name, labels)}
        return out - {None, ""}

    def claims(self) -> list[tuple[str, dict[str, str]]]:
        """Alerts this drill must see (it expects or resolves them)."""
        return [(e.alert, e.labels) for e in self.drill.expect] + [(r.alert, r.labels) for r in self.drill.resolve]

    def side_effects(self) -> list[tuple[str, dict[str, str]]]:
        return self.drill.tolerated()

    def watches(self) -> list[tuple[str, dict[str, str]]]:
        return [(q.alert, q.labels) for q in self.drill.quiet]

    def compatible(self, other: DrillRun) -> bool:
        """May run beside ``other``: different places, and neither can cause what the other
        must see or must not see (two drills may share a tolerated side effect)."""
        if self.exclusive or other.exclusive:
            return False
        if (self.bank_wide and not other.iis_only) or (other.bank_wide and not self.iis_only):
            return False
        if self.reach() & other.reach():
            return False
        # A fault shows in the alerts of every service it reaches (a stopped fraud fails
        # transfers), whether or not the drill names them.
        if self.reach() & other.alert_services() or other.reach() & self.alert_services():
            return False

        def overlap(a: list[tuple[str, dict]], b: list[tuple[str, dict]]) -> bool:
            return any(x == y and all(lx.get(k, v) == v for k, v in ly.items()) for x, lx in a for y, ly in b)

        for one, two in ((self, other), (other, self)):
            causes = one.claims() + one.side_effects()
            if overlap(causes, two.claims()) or overlap(causes, two.watches()) or one.would_inhibit(two):
                return False
        return True

    def _pages(self) -> list[tuple[str, str]]:
        """(service, site) of every critical alert this drill may cause."""
        out = []
        for name, labels in self.claims() + self.side_effects():
            for rule in matching_rules(self.catalog.rules, name, labels):
                service = labels.get(c.L_SERVICE, rule.service)
                if rule.severity is c.Severity.CRITICAL and service:
                    out.append((service, labels.get(c.L_SITE, "")))
        return out

    def would_inhibit(self, other: DrillRun) -> bool:
        """Alertmanager would hold back what ``other`` expects while this drill's alerts fire: a
        page for the same service (and site), or a flood alert over what a flood causes."""
        names = {name for name, _ in self.claims() + self.side_effects()}
        flood = bool(names & set(self.catalog.rules.floods()))
        pages = self._pages()
        for e in other.drill.expect:
            if flood and e.alert in self.catalog.rules.ddos_caused():
                return True
            for rule in matching_rules(self.catalog.rules, e.alert, e.labels):
                service = e.labels.get(c.L_SERVICE, rule.service)
                if rule.severity is c.Severity.WARNING and service and any(
                        page_service == service and (not page_site or not e.labels.get(c.L_SITE)
                                                     or page_site == e.labels[c.L_SITE])
                        for page_service, page_site in pages):
                    return True
        return False

    def _explained(self, name: str, labels: dict[str, str]) -> bool:
        """Caused by a drill running now: one of its alerts, or another window pair of it (an SLO
        alert's 6h pair fires beside the 1h one in the same incident)."""
        for run in (self, *self.partners):
            for alert, wanted in run.claims() + run.side_effects() + run.watches():
                pairless = {k: v for k, v in wanted.items() if k not in _WINDOW_LABELS}
                if alert == name and _matches(labels, pairless):
                    return True
        return False

    def rel(self, at: float | None) -> float | None:
        return None if at is None or self.t0 is None else at - self.t0

    # --- the phases ---------------------------------------------------------------------------------

    def tick(self, snap: Snapshot) -> None:
        if self.phase == "calm":
            self._calm(snap)
        elif self.phase == "running":
            self._observe(snap)
            self._steps(snap.at)
        elif self.phase == "recovering":
            self._observe(snap)
            self._recover(snap)

    def _active(self, snap: Snapshot, name: str, labels: dict[str, str], states: tuple[str, ...]) -> list[dict]:
        return [a for a in snap.alerts if a["labels"].get("alertname") == name and _matches(a["labels"], labels)
                and a.get("state") in states]

    def busy(self, snap: Snapshot) -> list[str]:
        """What keeps the drill from starting: its expected alerts already pending or firing."""
        # Only what the drill expects blocks it: a quiet alert still firing from before is judged
        # by whether it starts anew (or is notified anew) during the drill.
        out = []
        for e in self.drill.expect:
            if e.absent:
                continue
            for alert in self._active(snap, e.alert, e.labels, ("pending", "firing")):
                out.append(f"{e.alert}{_show(alert['labels'])} {alert['state']}")
        out += self.resolution_undelivered(snap)
        out += self.quiet_recently_fired(snap)
        for e in self.drill.expect:
            if e.absent:
                continue
            # A page still firing for the same service (and site) would hold the expected ticket
            # back in Alertmanager (alertmanager/README.md, inhibition rule 1).
            for rule in matching_rules(self.catalog.rules, e.alert, e.labels):
                service = e.labels.get(c.L_SERVICE, rule.service)
                if rule.severity is not c.Severity.WARNING or not service:
                    continue
                for alert in snap.alerts:
                    labels = alert["labels"]
                    if alert.get("state") == "firing" and labels.get(c.L_SEVERITY) == "critical" \
                            and labels.get(c.L_SERVICE) == service \
                            and labels.get(c.L_SITE, "") == e.labels.get(c.L_SITE, labels.get(c.L_SITE, "")):
                        out.append(f"{labels.get('alertname')}{_show(labels)} firing would inhibit {e.alert}")
            # A flood alert still firing holds back everything a flood causes (inhibition rule 2).
            if e.alert in self.catalog.rules.ddos_caused():
                for alert in snap.alerts:
                    name = alert["labels"].get("alertname")
                    # Pending too: it fires within its `for` and holds the page back all the same.
                    if name in self.catalog.rules.floods():
                        out.append(f"{name} {alert.get('state')} would inhibit {e.alert}")
        return sorted(set(out))

    def resolution_undelivered(self, snap: Snapshot) -> list[str]:
        """Expected alerts whose last notification at their receiver still said firing.

        Alertmanager's notification log holds them as sent until it flushes their resolution
        (a group interval after Prometheus resolves them). One that fires again before that
        flush is the same alert to it, already notified: nothing is sent until repeat_interval,
        and a drill started then waits in vain for its page. A resolution that never comes (the
        alert resolved while inhibited or silenced, or Alertmanager restarted) holds the drill
        back only for that flush's time after the alert was last seen firing."""
        profile = self.profile
        grace = profile.group_wait_s + 2 * profile.group_interval_s + 4 * profile.evaluation_s
        out = []
        since = snap.at - profile.repeat_interval_s
        for e in self.drill.expect:
            if e.absent:
                continue
            last: dict[tuple, tuple[float, str, dict[str, str]]] = {}
            for note in snap.notifications:
                at = note.get("received_at", 0)
                if note.get("receiver") != e.receiver or at < since:
                    continue
                for alert in note.get("alerts", []):
                    labels = alert.get("labels", {})
                    if alert.get("alertname") == e.alert and _matches(labels, e.labels) \
                            and at >= last.get(_key(labels), (-1.0,))[0]:
                        last[_key(labels)] = (at, alert.get("status", ""), labels)
            for at, status, labels in last.values():
                if status == "firing" and snap.at - max(at, _last_seen_firing(e.alert, labels)) < grace:
                    out.append(f"{e.alert}{_show(labels)} was notified firing at {e.receiver} {snap.at - at:.0f} s "
                               f"ago and Alertmanager has not delivered its resolution yet (until then it would "
                               f"not send it again)")
        return out

    def calm_in(self, snap: Snapshot) -> bool:
        return not snap.errors and not self.busy(snap)

    def quiet_recently_fired(self, snap: Snapshot) -> list[str]:
        """A quiet alert that fired moments ago (a detector still settling after an earlier
        drill) would be blamed on this one: wait until it has been quiet a while."""
        out = []
        firing_now = {(a["labels"].get("alertname", ""), _key(a["labels"])) for a in snap.alerts
                      if a.get("state") == "firing"}
        for q in self.drill.quiet:
            if q.inhibited:
                continue
            for (name, key), seen in _RECENTLY_FIRING.items():
                # One firing all along started before the drill and is not counted against it;
                # one that stopped moments ago may start again (flap) during it.
                if name == q.alert and _matches(dict(key), q.labels) and (name, key) not in firing_now \
                        and snap.at - seen < self.quiet_gap_s:
                    out.append(f"{name}{_show(dict(key))} stopped firing {snap.at - seen:.0f} s ago")
        return out

    def _calm(self, snap: Snapshot) -> None:
        if snap.errors:
            self.blocked_by = snap.errors[0]
        else:
            busy = self.busy(snap) or self._diagnosis_showing(snap.at)
            if busy and not self.blocked_by:
                self.say(f"[{self.drill.name}] waiting until the lab is calm: {'; '.join(busy)}")
            self.blocked_by = "; ".join(busy)
            if not busy:
                self._begin(snap)
                return
        if snap.at - self.created > self.calm_timeout_s:
            self.problems.append(f"the lab never became calm enough to start within {self.calm_timeout_s:.0f} s: "
                                 f"{self.blocked_by}")
            self.phase = "done"
            self.finished_at = snap.at

    def _diagnosis_showing(self, now: float) -> list[str]:
        """Diagnosis queries that already show the cause (an earlier drill's incident still in
        their window): the drill waits for them, as it would fail "showed the cause before"."""
        if now - self.diag_last < DIAGNOSE_EVERY_SECONDS:
            return self._calm_diagnosis
        self.diag_last = now
        self._calm_diagnosis = []
        for i, diagnose in enumerate(self.drill.diagnose):
            value = self._diagnose_value(i)
            if value is not None and diagnose.holds(value):
                self._calm_diagnosis.append(f"the diagnosis query of {diagnose.runbook} already shows {value:g} "
                                            f"({diagnose.shows})")
        return self._calm_diagnosis

    def _begin(self, snap: Snapshot) -> None:
        self.started_at = snap.at
        for i, diagnose in enumerate(self.drill.diagnose):
            self.diag_before[i] = self._diagnose_value(i)
        self.baseline = {(a["labels"].get("alertname", ""), _key(a["labels"])) for a in snap.alerts}
        self.notes = self._unclean_windows()
        for state in self.expects:
            if state.expect.absent:
                state.last_beat = self._last_beat(snap, state.expect)
        self.t0 = time.time()
        self.phase = "running"
        self.say(f"[{self.drill.name}] started (profile {self.profile.name})")
        self.lab.post_receiver(f"{c.API_PREFIX}/drills/events", {
            "run_id": self.run_id, "drill": self.drill.name, "event": "start", "at": self.t0, "passed": None})
        self._steps(self.t0)

    def _unclean_windows(self) -> list[str]:
        """An SLO page's long window may still hold an earlier incident although the alert has
        resolved (its short window cleared): a page then comes sooner than a clean start allows.
        Such figures are marked, not hidden."""
        notes = []
        for state in self.expects:
            for rule in matching_rules(self.catalog.rules, state.expect.alert, state.expect.labels):
                slo, window = rule.labels().get(c.L_SLO), rule.labels().get(c.L_LONG_WINDOW)
                if not slo or not window:
                    continue
                try:
                    result = self.lab.query(f'slo:burn_rate:ratio_rate{window}{{slo="{slo}"}}')
                except DrillError:
                    continue
                burn = max((float(r["value"][1]) for r in result), default=0.0)
                if burn >= 1:
                    notes.append(f"{state.expect.alert}: the {window} window of {slo} still held an earlier "
                                 f"incident at the start (burn rate {burn:.1f}); its figures are not a clean start")
        return notes

    def _steps(self, now: float) -> None:
        assert self.t0 is not None
        elapsed = now - self.t0
        for state in self.steps:
            if state.started_at is None and elapsed >= state.start_s:
                self._start_step(state)
        everything_started = all(s.started_at is not None for s in self.steps)
        met = self._all_met()
        if met and self.met_at is None:
            self.met_at = now
        last_deadline = max([e.origin_s + e.deadline_s for e in self.expects] + [s.start_s for s in self.steps])
        early = everything_started and self.met_at is not None and now - self.met_at >= self.settle_s
        late = elapsed > last_deadline
        for state in self.steps:
            if state.started_at is not None and state.ended_at is None and (
                    now - state.started_at >= state.duration_s or early or late):
                self._end_step(state)
        if everything_started and all(s.ended_at is not None for s in self.steps):
            self.te = max(s.ended_at for s in self.steps if s.ended_at is not None)
            self.phase = "recovering"
            self.say(f"[{self.drill.name}] faults ended at +{self.te - self.t0:.0f} s; waiting for resolution")

    def _start_step(self, state: StepState) -> None:
        step = state.step
        state.started_at = time.time()
        try:
            if step.kind == STOP:
                # Remembered before acting: a CLI killed during the stop still knows to start it again.
                self.stopped.append(step.target)
                _LEFT["stopped"].add(step.target)
                record_active(self.lab)
                self.lab.stop(step.target)
            else:
                body = {"kind": step.kind.value, "target": step.target, **step.params,
                        "ttl_seconds": max(1, math.ceil(state.duration_s + TTL_MARGIN_SECONDS)),
                        "reason": f"drill {self.drill.name} ({self.run_id})"}
                state.fault_id = self.lab.set_fault(body)["id"]
                _LEFT["faults"].add(state.fault_id)
                record_active(self.lab)
        except DrillError as exc:
            self.problems.append(f"could not start {step.describe()}: {exc}")
            self._end_step(state)
            return
        self.say(f"[{self.drill.name}] +{state.started_at - (self.t0 or state.started_at):.0f} s "
                 f"{step.describe()} for up to {state.duration_s:.0f} s")

    def _end_step(self, state: StepState) -> None:
        step = state.step
        state.ended_at = time.time()
        try:
            if step.kind == STOP:
                self.lab.start(step.target)
                if not self.lab.wait_healthy(step.target):
                    self.problems.append(f"{step.target} did not become healthy again after the drill started it")
                if step.target in self.stopped:
                    self.stopped.remove(step.target)
                _LEFT["stopped"].discard(step.target)
            elif state.fault_id:
                self.lab.clear_fault(state.fault_id)
                _LEFT["faults"].discard(state.fault_id)
        except DrillError as exc:
            # Kept in active.json: the next drill command tries again.
            self.problems.append(f"could not end {step.describe()}: {exc}")
        record_active(self.lab)

    def abort(self) -> None:
        """Clear what this drill injected and restart what it stopped (Ctrl-C, an error)."""
        for state in self.steps:
            if state.started_at is not None and state.ended_at is None:
                self._end_step(state)
        if self.phase != "done":
            self.problems.append("interrupted before the end")
            self.phase = "done"
            self.finished_at = time.time()

    def _all_met(self) -> bool:
        return all(s.notified_at is not None for s in self.expects) and \
            all(self.diag_seen[i] for i in range(len(self.drill.diagnose)))

    # --- observing ----------------------------------------------------------------------------------

    def _cause_started(self, state: ExpectState) -> float | None:
        """When the step that causes ``state``'s alert started (None: not yet); the figures count
        from there."""
        started = self.steps[state.expect.after].started_at
        if started is not None and self.t0 is not None:
            state.origin_s = started - self.t0
        return started

    def _last_beat(self, snap: Snapshot, expect: Expect) -> float | None:
        beats = [note["received_at"] for note, alert in _notified_alerts(snap, 0)
                 if note.get("receiver") == expect.receiver and alert.get("alertname") == expect.alert]
        return max(beats) if beats else None

    def _observe(self, snap: Snapshot) -> None:
        assert self.t0 is not None
        now = snap.at
        window_open = self.te is None or now - self.te <= self.settle_s
        # Alerts Prometheus holds: the timeline, first firing, quiet, unexpected.
        for alert in snap.alerts:
            labels = alert["labels"]
            name = labels.get("alertname", "")
            if name == self.catalog.rules.watchdog():
                continue
            ident = (name, _key(labels))
            # The picture shows the drill's own alerts, any alert of a name it expects (with other
            # labels, perhaps left firing by an earlier drill: a report that waited in vain names
            # what it saw instead) and whatever started during it, not every alert that was
            # already firing in the lab.
            own = any(name == alert and _matches(labels, {k: v for k, v in wanted.items()
                                                            if k not in _WINDOW_LABELS})
                      for alert, wanted in self.claims() + self.watches()) \
                or any(name == e.alert for e in self.drill.expect)
            if not own and ident in self.baseline:
                continue
            self.interval_labels[ident] = labels
            spans = self.intervals.setdefault((*ident, alert["state"]), [])
            t = now - self.t0
            if spans and t - spans[-1][1] <= 3 * POLL_SECONDS:
                spans[-1][1] = t
            else:
                spans.append([t, t])
            if alert["state"] != "firing":
                continue
            for state in self.expects:
                cause = self._cause_started(state)
                if cause is None or (_epoch(alert.get("activeAt")) or now) < cause - 1:
                    continue     # not this step's doing: it fired before the step that causes it
                if state.fired_at is None and not state.expect.absent and name == state.expect.alert \
                        and _matches(labels, state.expect.labels):
                    state.fired_at = now
                    self.say(f"[{self.drill.name}] {name}{_show(labels)} firing at +{now - self.t0:.1f} s")
            new = (_epoch(alert.get("activeAt")) or now) >= self.t0 - 1
            for i, quiet in enumerate(self.drill.quiet):
                if self.quiet_fired[i] is None and name == quiet.alert and _matches(labels, quiet.labels) \
                        and window_open and new:
                    self.quiet_fired[i] = now
            if window_open and ident not in self.baseline and not self._explained(name, labels):
                self.unexpected.setdefault(ident, labels)
        # Notifications at the receiver.
        for note, alert in _notified_alerts(snap, self.t0):
            name = alert.get("alertname")
            labels = alert.get("labels", {})
            if (_epoch(alert.get("starts_at")) or note["received_at"]) < self.t0 - 1:
                continue    # a repeat of an alert that began before the drill
            for state in self.expects:
                e = state.expect
                if e.absent or name != e.alert or not _matches(labels, e.labels) or alert.get("status") != "firing":
                    continue
                cause = self._cause_started(state)
                if cause is None or (_epoch(alert.get("starts_at")) or note["received_at"]) < cause - 1:
                    continue
                if note.get("receiver") == e.receiver:
                    if state.notified_at is None or note["received_at"] < state.notified_at:
                        if state.notified_at is None:
                            after = note['received_at'] - self.t0 - state.origin_s
                            self.say(f"[{self.drill.name}] {name} notified at {e.receiver} after {after:.1f} s "
                                     f"(floor {state.floor_s:.1f} s)")
                        state.notified_at = note["received_at"]
                else:
                    state.elsewhere.add(note.get("receiver", "?"))
            for i, quiet in enumerate(self.drill.quiet):
                # An inhibited alert still firing when the page resolves is delivered then, by
                # design (alertmanager/README.md): only a delivery during the incident counts.
                until = self.te if quiet.inhibited else (None if self.te is None else self.te + self.settle_s)
                if name == quiet.alert and _matches(labels, quiet.labels) and alert.get("status") == "firing" \
                        and self.quiet_notified[i] is None and (until is None or note["received_at"] <= until):
                    self.quiet_notified[i] = note.get("receiver")
        # Dead-man's switch: the heartbeat stopped arriving.
        for state in self.expects:
            if not state.expect.absent:
                continue
            beat = self._last_beat(snap, state.expect)
            if beat is not None and (state.last_beat is None or beat > state.last_beat):
                state.last_beat = beat
            # The switch trips two heartbeats after the last one heard, wherever that fell (after
            # Prometheus stops, Alertmanager may still deliver one it already had).
            since = state.last_beat if state.last_beat is not None else self.t0
            trips = since + state.period_s
            if state.notified_at is None and now >= trips:
                state.notified_at = now
                state.floor_s = max(0.0, trips - self.t0)
                self.say(f"[{self.drill.name}] dead-man's switch tripped: no {state.expect.alert} at "
                         f"{state.expect.receiver} since +{since - self.t0:.1f} s")
        # Alertmanager's view: an inhibited quiet alert must be held (suppressed) there, and an
        # expected one that is held back says by what (the reason a page never came).
        if snap.alertmanager is not None:
            for state in self.expects:
                if state.notified_at is None and not state.expect.absent:
                    state.held_by |= _held_by(snap.alertmanager, state.expect.alert, state.expect.labels)
            for i, quiet in enumerate(self.drill.quiet):
                for alert in snap.alertmanager:
                    if alert["labels"].get("alertname") == quiet.alert and _matches(alert["labels"], quiet.labels) \
                            and alert.get("status", {}).get("inhibitedBy"):
                        self.quiet_held[i] = True
        # Diagnosis queries, every few seconds while the faults are on.
        if self.phase == "running" and now - self.diag_last >= DIAGNOSE_EVERY_SECONDS:
            self.diag_last = now
            for i, diagnose in enumerate(self.drill.diagnose):
                value = self._diagnose_value(i)
                if value is not None:
                    self.series[i].append([round(now - self.t0, 1), value])
                    if diagnose.holds(value) and not self.diag_seen[i]:
                        self.diag_seen[i] = True
                        self.diag_during[i] = value
                    elif not self.diag_seen[i]:
                        self.diag_during[i] = value

    def _diagnose_value(self, i: int) -> float | None:
        """The query's value for the series the drill looks at: the extreme one in the direction
        of ``shows`` (the largest for '>' conditions, the smallest for '<')."""
        diagnose = self.drill.diagnose[i]
        try:
            # Read as the lab's profile reads its rules: a fast lab's 5m is 30 s.
            result = self.lab.query(self.profile.scale_ranges(diagnose.query))
        except DrillError:
            return None
        values = []
        for series in result:
            if _matches(series.get("metric", {}), diagnose.labels):
                try:
                    value = float(series["value"][1])
                except (KeyError, ValueError, IndexError):
                    continue
                if not math.isnan(value):
                    values.append(value)
        if not values:
            return None
        return min(values) if diagnose.shows.strip().startswith("<") else max(values)

    def _recover(self, snap: Snapshot) -> None:
        assert self.te is not None and self.t0 is not None
        now = snap.at
        waiting = False
        for i, item in enumerate(self.drill.resolve):
            if self.resolved_at[i] is not None:
                continue
            receivers = [s for s in self.expects if s.expect.alert == item.alert]
            absent = any(s.expect.absent for s in receivers)
            if absent:
                beats = [note["received_at"] for note, alert in _notified_alerts(snap, self.te)
                         if alert.get("alertname") == item.alert]
                if beats:
                    self.resolved_at[i] = min(beats)
                else:
                    self.resolve_waiting[i] = f"no {item.alert} heartbeat yet"
            else:
                firing = self._active(snap, item.alert, item.labels, ("firing",))
                sends = {s.expect.receiver for s in receivers} - {c.RECEIVER_DEADMAN, c.RECEIVER_BLACKHOLE}
                sent = [note["received_at"] for note, alert in _notified_alerts(snap, self.te)
                        if alert.get("alertname") == item.alert and _matches(alert.get("labels", {}), item.labels)
                        and alert.get("status") == "resolved" and note.get("receiver") in sends]
                if not firing and (not sends or sent) and not snap.errors:
                    self.resolved_at[i] = max(min(sent) if sent else now, self.te)
                    if not sent:
                        self.resolved_at[i] = now
                else:
                    self.resolve_waiting[i] = (f"still firing in Prometheus ({len(firing)} series)" if firing
                                               else f"no resolved notification at {', '.join(sorted(sends))} yet")
            if self.resolved_at[i] is None:
                if now - self.te <= self.resolve_deadlines[i]:
                    waiting = True
        tail_done = now - self.te >= (self.settle_s if not self.drill.resolve else 0)
        if not waiting and tail_done:
            self.phase = "done"
            self.finished_at = now
            for i, item in enumerate(self.drill.resolve):
                if self.resolved_at[i] is not None:
                    self.say(f"[{self.drill.name}] {item.alert} resolved {self.resolved_at[i] - self.te:.1f} s "
                             f"after the faults ended")

    # --- the result ------------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        t0 = self.t0
        alerts = []
        for state in self.expects:
            e = state.expect
            resolved = next((self.resolved_at[i] for i, r in enumerate(self.drill.resolve)
                             if r.alert == e.alert and _matches(e.labels, r.labels)), None)
            resolve_deadline = next((self.resolve_deadlines[i] for i, r in enumerate(self.drill.resolve)
                                     if r.alert == e.alert and _matches(e.labels, r.labels)), None)
            notified = state.since_cause(self.rel(state.notified_at))
            why = ""
            passed = notified is not None and notified <= state.deadline_s
            if notified is None:
                why = self._waited_for(state)
            elif notified > state.deadline_s:
                why = f"notified after {notified:.1f} s, past the {state.deadline_s:.0f} s deadline"
            alerts.append({
                "alert": e.alert, "labels": e.labels, "receiver": e.receiver,
                "fired_seconds": _round(state.since_cause(self.rel(state.fired_at))),
                "notified_seconds": _round(notified),
                "floor_seconds": _round(state.floor_s), "deadline_seconds": _round(state.deadline_s),
                "ratio": None if notified is None or not state.floor_s else round(notified / state.floor_s, 2),
                "resolved_seconds": _round(None if resolved is None or self.te is None else resolved - self.te),
                "resolve_deadline_seconds": _round(resolve_deadline), "absent": e.absent,
                "passed": passed, "why": why,
            })
        quiet = []
        for i, q in enumerate(self.drill.quiet):
            notified = self.quiet_notified[i]
            fired = self.quiet_fired[i]
            why = ""
            if notified:
                why = f"delivered to {notified}"
            elif fired is not None and not q.inhibited:
                why = f"fired in Prometheus at +{fired - (t0 or fired):.1f} s"
            elif fired is not None and q.inhibited and not self.quiet_held[i]:
                why = f"fired at +{fired - (t0 or fired):.1f} s and Alertmanager was never seen holding it back"
            quiet.append({"alert": q.alert, "labels": q.labels, "inhibited_ok": q.inhibited,
                          "fired_seconds": _round(self.rel(fired)), "held": self.quiet_held[i],
                          "passed": not why, "why": why})
        diagnose = []
        for i, d in enumerate(self.drill.diagnose):
            before = self.diag_before[i]
            before_ok = before is None or not d.holds(before)
            passed = before_ok and self.diag_seen[i]
            why = "" if passed else ("already showed the cause before the fault" if not before_ok
                                     else "never showed the cause during the incident")
            diagnose.append({"runbook": d.runbook, "query": d.query, "query_run": self.profile.scale_ranges(d.query),
                             "labels": d.labels, "condition": d.shows,
                             "before": before, "during": self.diag_during[i], "passed": passed, "why": why})
        resolves = []
        for i, r in enumerate(self.drill.resolve):
            at = self.resolved_at[i]
            took = None if at is None or self.te is None else at - self.te
            ok = took is not None and took <= self.resolve_deadlines[i]
            resolves.append({"alert": r.alert, "labels": r.labels, "resolved_seconds": _round(took),
                             "deadline_seconds": self.resolve_deadlines[i], "passed": ok,
                             "why": "" if ok else (f"took {took:.1f} s" if took is not None else
                                                   f"not resolved within {self.resolve_deadlines[i]:.0f} s: "
                                                   f"{self.resolve_waiting[i]}")})
        problems = list(self.problems)
        passed = not problems and all(a["passed"] for a in alerts) and all(q["passed"] for q in quiet) and \
            all(d["passed"] for d in diagnose) and all(r["passed"] for r in resolves)
        for what, rows in (("alerts", alerts), ("quiet", quiet), ("diagnose", diagnose), ("resolve", resolves)):
            for row in rows:
                if not row["passed"]:
                    label = row.get("alert") or row.get("query")
                    problems.append(f"{what}: {label}{_show(row.get('labels') or {})}: {row['why']}")
        timeline_alerts = [
            {"alert": name, "labels": _shown_labels(self.interval_labels.get((name, key), dict(key))), "state": state,
             "from_s": round(span[0], 1), "to_s": round(span[1], 1)}
            for (name, key, state), spans in sorted(self.intervals.items()) for span in spans]
        notifications = []
        if t0 is not None:
            for note in self._notes_seen:
                notifications.append(note)
        return {
            "run_id": self.run_id, "name": self.drill.name, "title": self.drill.title, "story": self.drill.story,
            "cause": self.drill.cause, "profile": self.profile.name, "passed": passed,
            "started_at": self.started_at, "fault_started_at": t0, "fault_ended_at": self.te,
            "ended_at": self.finished_at,
            "faults": [{"kind": s.step.kind_name, "target": s.step.target, "params": s.step.params,
                        "id": s.fault_id, "start_s": _round(self.rel(s.started_at)),
                        "end_s": _round(self.rel(s.ended_at))} for s in self.steps],
            "alerts": alerts, "quiet": quiet, "diagnose": diagnose, "resolve": resolves,
            "unexpected": sorted({name for name, _ in self.unexpected}),
            "unexpected_detail": sorted(f"{name}{_show(labels)}" for (name, _), labels in self.unexpected.items()),
            "problems": problems, "notes": self.notes,
            "timeline": {"alerts": timeline_alerts, "notifications": notifications,
                         "series": [{"name": f"{d.runbook}: {d.query[:80]}", "query": d.query,
                                     "condition": d.shows, "points": self.series[i]}
                                    for i, d in enumerate(self.drill.diagnose)]},
        }

    _notes_seen: list[dict]

    def record_notifications(self, snap: Snapshot) -> None:
        """The notifications that arrived during this drill (for the timeline picture)."""
        if self.t0 is None:
            return
        seen = {(n["id"], n["alert"], n["status"]) for n in self._notes_seen}
        end = self.finished_at or snap.at
        for note, alert in _notified_alerts(snap, self.t0):
            if note["received_at"] > end + 1:
                continue
            name = alert.get("alertname")
            if name == self.catalog.rules.watchdog() and not any(e.expect.absent for e in self.expects):
                continue
            ident = (note.get("id"), name, alert.get("status"))
            if ident not in seen:
                seen.add(ident)
                self._notes_seen.append({"id": note.get("id"), "alert": name,
                                         "labels": _shown_labels(alert.get("labels", {})),
                                         "receiver": note.get("receiver"), "status": alert.get("status"),
                                         "at_s": round(note["received_at"] - self.t0, 1)})

    def _waited_for(self, state: ExpectState) -> str:
        e = state.expect
        if e.absent:
            return (f"waited {state.deadline_s:.0f} s for {e.alert} to stop arriving at {e.receiver}; "
                    f"the last one arrived at +{(state.last_beat or 0) - (self.t0 or 0):.1f} s")
        waited = state.deadline_s if self.t0 is None or (self.te or time.time()) - self.t0 >= state.deadline_s \
            else f"{(self.te or time.time()) - self.t0:.0f} s of the {state.deadline_s:.0f} s deadline"
        seen = []
        if state.fired_at is not None:
            seen.append(f"it fired in Prometheus at +{self.rel(state.fired_at):.1f} s")
        else:
            similar = sorted({f"{name}{_show(dict(key))} {state_}" for (name, key, state_) in self.intervals
                              if name == e.alert})
            seen.append("it never fired in Prometheus with these labels" +
                        (f" (saw {', '.join(similar)})" if similar else ""))
        if state.elsewhere:
            seen.append(f"it was delivered to {', '.join(sorted(state.elsewhere))} instead")
        if state.held_by:
            seen.append(f"Alertmanager held it back ({', '.join(sorted(state.held_by))})")
        routed = receivers_for(self.catalog.rules, e.alert, e.labels)
        waited_text = f"{waited:.0f} s" if isinstance(waited, float) else waited
        return (f"waited {waited_text} for a firing notification of {e.alert}{_show(e.labels)} at "
                f"{e.receiver} (routed to {', '.join(sorted(routed))}); " + "; ".join(seen))


def _last_seen_firing(name: str, labels: dict[str, str]) -> float:
    """When this process last saw alert ``name`` firing in Prometheus (0: never). A notification
    carries Prometheus's external labels too: its labels hold the alert's, not the other way."""
    return max((seen for (alert, key), seen in _RECENTLY_FIRING.items()
                if alert == name and all(labels.get(k) == v for k, v in key)), default=0.0)


# --- crash recovery: what a killed drill left behind ---------------------------------------------

_RUNNING: list[DrillRun] = []
# When each alert (name, labels) was last seen firing, across the drills of this process.
_RECENTLY_FIRING: dict[tuple[str, tuple], float] = {}
# What this process injected or stopped and has not undone yet (mirrored in active.json).
_LEFT: dict[str, set[str]] = {"faults": set(), "stopped": set()}


def active_path(lab: Lab) -> Path:
    return lab.data_dir / "drills" / "active.json"


def read_active(lab: Lab) -> dict:
    return _read_json(active_path(lab)) or {}


def write_active(lab: Lab, data: dict) -> None:
    path = active_path(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def record_active(lab: Lab, run: DrillRun | None = None) -> None:  # noqa: ARG001
    """Remember what the drills of this process left on (``active.json``, key ``run``)."""
    data = read_active(lab)
    data["run"] = {"pid": os.getpid(), "faults": sorted(_LEFT["faults"]), "stopped": sorted(_LEFT["stopped"])}
    write_active(lab, data)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def undo(lab: Lab, entry: dict, say: Callable[[str], None], why: str) -> dict:
    """Clear ``entry``'s faults and start its stopped components, best effort; what could not be
    undone stays in the returned entry."""
    left = {"faults": [], "stopped": []}
    for fault_id in entry.get("faults", []):
        try:
            lab.clear_fault(fault_id)
            say(f"cleared fault {fault_id}, left behind by {why}")
        except DrillError as exc:
            left["faults"].append(fault_id)
            say(f"could not clear fault {fault_id}: {exc}")
    for component in entry.get("stopped", []):
        try:
            lab.start(component)
            healthy = lab.wait_healthy(component)
            say(f"started {component} again, stopped by {why}" + ("" if healthy else " (not healthy yet)"))
        except DrillError as exc:
            left["stopped"].append(component)
            say(f"could not start {component}: {exc}")
    return left


def repair(lab: Lab, say: Callable[[str], None] = print) -> bool:
    """Undo what a drill run that is no longer alive left behind (a game is ended by `end` only).
    True when something was left."""
    data = read_active(lab)
    run = data.get("run") or {}
    pid = run.get("pid")
    if not (run.get("faults") or run.get("stopped")) or (pid and pid != os.getpid() and _alive(pid)):
        return False
    left = undo(lab, run, say, "an interrupted drill")
    data = read_active(lab)
    data["run"] = {"pid": None, **left}
    write_active(lab, data)
    return True

# --- running several ----------------------------------------------------------------------------

class DrillInterrupted(Exception):
    """Ctrl-C or a termination signal: the faults are cleared; ``results`` holds what was scored."""

    def __init__(self, results: list[dict[str, Any]]) -> None:
        super().__init__("interrupted")
        self.results = results


def _terminate(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


class _signals_held:
    """A second Ctrl-C must not cut the cleanup of the first short (restarting a component
    takes seconds): interrupts are ignored while faults are cleared."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __enter__(self) -> None:
        self.previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in self.SIGNALS}

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def new_run_id(name: str) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid() % 10000:04d}-{name}"


def run_drills(drills: list[Drill], catalog: DrillCatalog, lab: Lab, *, parallel: int = 1,
               keep_going: bool = True, say: Callable[[str], None] = print,
               calm_timeout_s: float | None = None,
               on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run ``drills`` (up to ``parallel`` at once when compatible); their results, in order.
    ``on_result`` gets each result as its drill ends (a report on disk before the next starts)."""
    def done(run: DrillRun) -> None:
        if on_result is not None:
            try:
                on_result(run.result())
            except OSError as exc:
                say(f"[{run.drill.name}] could not write its report: {exc}")

    repair(lab, say)
    _RECENTLY_FIRING.clear()
    pending = [DrillRun(d, catalog, lab, run_id=new_run_id(d.name), say=say, calm_timeout_s=calm_timeout_s)
               for d in drills]
    # Drills that upset the ML detectors for minutes after they end (a flood in their baselines,
    # gaps in every rate after Prometheus restarts) go last, so that no drill that keeps
    # DDoSAttackSuspected quiet runs in their wake.
    # Among equals, a drill that keeps quiet what others cause goes before them: after them it
    # would wait for their alerts to be quiet a while.
    wary = {id(run): _wary_of(run, list(pending)) for run in pending}
    pending.sort(key=lambda run: (run.disturbance(), -wary[id(run)]))
    for run in pending:
        run._notes_seen = []
    order = list(pending)
    running: list[DrillRun] = _RUNNING
    running.clear()
    finished: list[DrillRun] = []
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    last_am = 0.0
    last = take_snapshot(lab, with_alertmanager=False)
    try:
        while pending or running:
            # Start what may start: compatible with everything running and calm now (a drill
            # whose alerts still fire from an earlier one waits, unless nothing else can run).
            for run in list(pending):
                if len(running) >= max(1, parallel) or any(r.exclusive for r in running):
                    break
                # Drills that disturb the lab for minutes wait until every gentler one is done,
                # and one ahead of it that keeps quiet what it causes goes first, as soon as the
                # lab is calm for it (started now, this one would keep it waiting for minutes).
                if _waits_its_turn(run, pending, running):
                    continue
                # Not calm yet: it starts anyway (and waits in its calm phase, with a timeout) when
                # nothing runs and no other drill may start now, so the run never stalls.
                if all(run.compatible(other) for other in running) and (not running and not any(
                        p is not run and p.calm_in(last) and all(p.compatible(o) for o in running)
                        and not _waits_its_turn(p, pending, running) for p in pending) or run.calm_in(last)):
                    pending.remove(run)
                    run.created = time.time()
                    running.append(run)
            for run in running:
                run.partners = [other for other in running if other is not run]
            now = time.time()
            with_am = now - last_am >= ALERTMANAGER_EVERY_SECONDS
            if with_am:
                last_am = now
            snap = last = take_snapshot(lab, with_alertmanager=with_am)
            for alert in snap.alerts:
                if alert.get("state") == "firing":
                    _RECENTLY_FIRING[(alert["labels"].get("alertname", ""), _key(alert["labels"]))] = snap.at
            for run in list(running):
                run.tick(snap)
                run.record_notifications(snap)
                if run.phase != "done":
                    continue
                running.remove(run)
                finished.append(run)
                record_active(lab)
                done(run)
                if run.t0 is not None:
                    lab.post_receiver(f"{c.API_PREFIX}/drills/events", {
                        "run_id": run.run_id, "drill": run.drill.name, "event": "end",
                        "at": run.finished_at, "passed": run.result()["passed"]})
                if not keep_going and not run.result()["passed"]:
                    with _signals_held():
                        for other in running:
                            other.abort()
                            done(other)
                    finished.extend(running)
                    running.clear()
                    pending.clear()
                    break
            time.sleep(max(0.0, POLL_SECONDS - (time.time() - now)))
    except KeyboardInterrupt:
        with _signals_held():
            for run in running:
                run.abort()
                done(run)
        finished.extend(running)
        running.clear()
        record_active(lab)
        by_run = {id(run): run for run in finished}
        raise DrillInterrupted([by_run[id(r)].result() for r in order if id(r) in by_run]) from None
    except BaseException:
        with _signals_held():
            for run in running:
                run.abort()
        record_active(lab)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    by_run = {id(run): run for run in finished}
    return [by_run[id(run)].result() for run in order if id(run) in by_run]


def _waits_its_turn(run: DrillRun, pending: list[DrillRun], running: list[DrillRun]) -> bool:
    """A gentler drill is still to run or running, or one ahead of ``run`` that could start beside
    what runs is wary of it: those go first."""
    if any(other.disturbance() < run.disturbance() for other in (*pending, *running)):
        return True
    return any(_wary_of(ahead, [run]) and all(ahead.compatible(o) for o in running)
               for ahead in pending[:pending.index(run)])


def _wary_of(run: DrillRun, others: list[DrillRun]) -> int:
    """How many of ``others`` leave behind what keeps ``run`` from starting: an alert it keeps
    quiet, or a page that would hold back what it expects (an SLO page's longer window pairs fire
    for minutes after the incident)."""
    quiet = {q.alert for q in run.drill.quiet if not q.inhibited}     # held back, not silent: no wait
    return sum(1 for other in others if other is not run
               and (quiet & {name for name, _ in other.claims() + other.side_effects()} or other.would_inhibit(run)))
