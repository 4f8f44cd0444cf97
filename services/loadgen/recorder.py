"""What the load generator did, twice: Prometheus metrics for the lab, live figures for a terminal.

The live figures (totals, recent latencies, journey starts) feed the one-line status and the
final summary; they are kept here, beside the metrics, so the two can never disagree.

The journeys as a funnel: ``loadgen_journeys_started_total{journey}`` (a run started),
``loadgen_journey_steps_reached_total{journey,step}`` (a run sent its first request of a step;
the steps of each journey in order: ``journeys.JOURNEY_FUNNELS``) and the endings in
``loadgen_journeys_total{journey,outcome}`` (``obslab.conventions.loadgen.JOURNEY_ENDINGS``):

* completed: ``ok``;
* abandoned: ``abandoned``, the customer gave up (a failed login not tried again, nothing to
  transfer or pay from), and ``rejected``, the bank refused the money movement (funds, risk, a
  declined card): the customer leaves without what they came for, through no fault of the lab;
* failed: ``rate_limited`` and ``error`` (a 5xx, a timeout, no connection, an unexpected answer).

``dropped`` is none of them: a start the generator could not serve, never counted as started.
Every series is declared at start-up, so it exists at 0 before its first event.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from obslab import conventions as c
from obslab.conventions.loadgen import JOURNEY_DROPPED, JOURNEY_OUTCOMES
from obslab.services.loadgen.transport import OK, OUTCOMES
from obslab.telemetry import MetricSet

LOADGEN_METRICS = (
    c.LOADGEN_REQUESTS, c.LOADGEN_DURATION, c.LOADGEN_JOURNEYS, c.LOADGEN_TARGET_RATE,
    c.LOADGEN_FLOOD_RATE, c.LOADGEN_ACTIVE_JOURNEYS, c.LOADGEN_USERS, c.LOADGEN_JOURNEYS_STARTED,
    c.LOADGEN_STEPS_REACHED,
)
RECENT_SECONDS = 10.0
RESERVOIR_SIZE = 20_000
MAX_PROBLEMS = 50          # distinct error reasons remembered for the summary



def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, ``q`` in 0-100; None for no values.

    >>> percentile([0.1, 0.2, 0.3, 0.4], 50)
    0.2
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Snapshot:
    """A consistent copy of the live figures."""

    requests: int = 0                      # journey requests (what --requests bounds)
    by_outcome: Counter = field(default_factory=Counter)
    setup_requests: int = 0                # creating and funding the simulated customers
    flood_requests: int = 0
    journeys: Counter = field(default_factory=Counter)       # (journey, outcome) -> count
    started: int = 0
    started_recent: int = 0
    recent_p50: float | None = None
    recent_p95: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    replays: int = 0
    replay_mismatches: int = 0
    problems: Counter = field(default_factory=Counter)       # why journeys ended in error, by reason

    @property
    def errors(self) -> int:
        return self.requests - self.by_outcome.get(OK, 0)

    def journeys_by_outcome(self) -> Counter:
        result: Counter = Counter()
        for (_, outcome), count in self.journeys.items():
            result[outcome] += count
        return result

    def journeys_by_kind(self) -> Counter:
        result: Counter = Counter()
        for (kind, outcome), count in self.journeys.items():
            if outcome != JOURNEY_DROPPED:
                result[kind] += count
        return result


class Recorder:
    def __init__(self, metrics: MetricSet | None = None, clock=time.monotonic) -> None:
        self.metrics = metrics or MetricSet()
        self.metrics.declare(LOADGEN_METRICS)
        self.clock = clock
        self._requests = self.metrics.counter(c.LOADGEN_REQUESTS)
        self._duration = self.metrics.histogram(c.LOADGEN_DURATION)
        self._journeys = self.metrics.counter(c.LOADGEN_JOURNEYS)
        self._started = self.metrics.counter(c.LOADGEN_JOURNEYS_STARTED)
        self._reached = self.metrics.counter(c.LOADGEN_STEPS_REACHED)
        self.target_rate = self.metrics.gauge(c.LOADGEN_TARGET_RATE)
        self.flood_rate = self.metrics.gauge(c.LOADGEN_FLOOD_RATE)
        self.active_journeys = self.metrics.gauge(c.LOADGEN_ACTIVE_JOURNEYS)
        self.users_ready = self.metrics.gauge(c.LOADGEN_USERS)
        self._children: dict[tuple[str, str], tuple] = {}
        self._lock = threading.Lock()
        self._snapshot = Snapshot()
        self._recent: deque[tuple[float, float]] = deque(maxlen=8192)   # (when, seconds)
        self._starts: deque[float] = deque(maxlen=100_000)
        self._reservoir: list[float] = []
        self._seen = 0
        self._rng = random.Random(0)

    def _child(self, step: str, outcome: str) -> tuple:
        pair = self._children.get((step, outcome))
        if pair is None:
            pair = (self._requests.labels(step=step, outcome=outcome), self._duration.labels(step=step))
            self._children[(step, outcome)] = pair
        return pair

    def request(self, step: str, outcome: str, seconds: float, *, kind: str = "journey") -> None:
        """Count one request; ``kind`` is ``journey``, ``setup`` or ``flood``."""
        counter, histogram = self._child(step, outcome)
        counter.inc()
        histogram.observe(seconds)
        if kind != "journey":
            with self._lock:
                if kind == "flood":
                    self._snapshot.flood_requests += 1
                else:
                    self._snapshot.setup_requests += 1
            return
        now = self.clock()
        with self._lock:
            snap = self._snapshot
            snap.requests += 1
            snap.by_outcome[outcome] += 1
            self._recent.append((now, seconds))
            self._seen += 1
            if len(self._reservoir) < RESERVOIR_SIZE:
                self._reservoir.append(seconds)
            else:  # reservoir sampling keeps a uniform sample of a run of any length
                slot = self._rng.randrange(self._seen)
                if slot < RESERVOIR_SIZE:
                    self._reservoir[slot] = seconds

    @property
    def requests_sent(self) -> int:
        return self._snapshot.requests

    def journey_started(self, kind: str) -> None:
        self._started.labels(journey=kind).inc()
        with self._lock:
            self._snapshot.started += 1
            self._starts.append(self.clock())

    def step_reached(self, kind: str, step: str) -> None:
        """A run of journey ``kind`` reached ``step`` (the caller counts each step once per run)."""
        self._reached.labels(journey=kind, step=step).inc()

    def journey(self, kind: str, outcome: str, problem: str | None = None) -> None:
        self._journeys.labels(journey=kind, outcome=outcome).inc()
        with self._lock:
            self._snapshot.journeys[(kind, outcome)] += 1
            problems = self._snapshot.problems   # a problem names its step, e.g. "login: HTTP 503 ..."
            if problem and (problem in problems or len(problems) < MAX_PROBLEMS):
                problems[problem] += 1

    def replay(self, matched: bool) -> None:
        with self._lock:
            self._snapshot.replays += 1
            if not matched:
                self._snapshot.replay_mismatches += 1

    def declare_outcomes(self, steps: list[str]) -> None:
        """Create every (step, outcome) series at 0, so rates exist before the first error."""
        for step in steps:
            for outcome in OUTCOMES:
                self._child(step, outcome)

    def declare_journeys(self, funnels: Mapping[str, Iterable[str]]) -> None:
        """Create each journey's funnel series at 0: started, every step it can reach, every ending."""
        for kind, steps in funnels.items():
            self._started.labels(journey=kind)
            for step in steps:
                self._reached.labels(journey=kind, step=step)
            for outcome in JOURNEY_OUTCOMES:
                self._journeys.labels(journey=kind, outcome=outcome)

    def snapshot(self) -> Snapshot:
        now = self.clock()
        with self._lock:
            snap = self._snapshot
            copy = Snapshot(
                requests=snap.requests, by_outcome=Counter(snap.by_outcome), setup_requests=snap.setup_requests,
                flood_requests=snap.flood_requests,
                journeys=Counter(snap.journeys), started=snap.started,
                replays=snap.replays, replay_mismatches=snap.replay_mismatches, problems=Counter(snap.problems),
            )
            recent = [seconds for when, seconds in self._recent if now - when <= RECENT_SECONDS]
            copy.started_recent = sum(1 for when in self._starts if now - when <= RECENT_SECONDS)
            sample = list(self._reservoir)
        copy.recent_p50, copy.recent_p95 = percentile(recent, 50), percentile(recent, 95)
        copy.p50, copy.p95, copy.p99 = percentile(sample, 50), percentile(sample, 95), percentile(sample, 99)
        return copy
