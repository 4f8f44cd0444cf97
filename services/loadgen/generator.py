"""The load generator: paces journey starts, runs them on worker threads, floods on demand.

Threads:

* setup (a few): creates the simulated customers; traffic starts with the first one ready;
* pacer (one): starts journeys as a Poisson process at the target rate, wakes journeys whose
  customer has finished thinking, enforces ``--duration`` and ``--requests``;
* workers (``concurrency``): run one step of a journey at a time, so they bound the requests in
  flight. A start that finds every worker busy and a full backlog is dropped and counted
  (``loadgen_journeys_total{outcome="dropped"}``): the queue never grows without bound;
* flood control (one) and, while a ``ddos_flood`` fault is active, the flood's senders.

>>> from obslab.services.loadgen.config import LoadConfig
>>> generator = LoadGenerator(LoadConfig("http://127.0.0.1:1", "http://127.0.0.1:2", users=3))
>>> generator.phase
'idle'
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable

from obslab import conventions as c
from obslab.conventions.loadgen import JOURNEY_DROPPED, JOURNEY_ERROR
from obslab.faults.board import FaultBoard
from obslab.faults.model import Fault
from obslab.platform.identity import Signer
from obslab.secrets import SecretError
from obslab.services.loadgen import journeys
from obslab.services.loadgen.config import LoadConfig
from obslab.services.loadgen.flood import FLOOD_STEPS, FloodController, FloodEngine
from obslab.services.loadgen.identities import build_identities
from obslab.services.loadgen.journeys import JOURNEY_FUNCTIONS, NEEDS_CUSTOMER, Abort, Session, Toolkit
from obslab.services.loadgen.pacing import Arrivals, surge_factor, target_rate
from obslab.services.loadgen.population import DEPOSIT_STEP, SETUP_STEPS, Population, Provisioner, User
from obslab.services.loadgen.recorder import Recorder
from obslab.services.loadgen.transport import HttpClient
from obslab.telemetry import MetricSet

log = logging.getLogger(__name__)

# Journeys in progress at most (most of them customers thinking): a bound on memory, far above
# what any sane rate reaches (rate x journey length).
MAX_ACTIVE_JOURNEYS = 5_000
PACER_TICK_SECONDS = 0.25
SETUP_THREADS = 4


class JourneyRun:
    """One journey in progress."""

    __slots__ = ("kind", "steps", "outcome", "problem")

    def __init__(self, kind: str, steps: journeys.Journey) -> None:
        self.kind = kind
        self.steps = steps
        self.outcome = JOURNEY_ERROR
        self.problem: str | None = None

    def advance(self) -> float | None:
        """Run to the next think time (returned) or to the end (None; ``outcome`` is set)."""
        try:
            return next(self.steps)
        except StopIteration as done:
            self.outcome = done.value or JOURNEY_ERROR
        except Abort as abort:
            self.outcome = abort.outcome
            self.problem = str(abort) if abort.outcome == JOURNEY_ERROR else None
        except Exception as exc:  # a bug in a journey must not kill a worker thread
            log.exception("journey failed unexpectedly", extra={"journey": self.kind})
            self.outcome = JOURNEY_ERROR
            self.problem = f"{type(exc).__name__}: {exc}"
        return None


def _lab_signer() -> Signer | None:
    try:
        return Signer.load(c.LOAD_GENERATOR)
    except SecretError as exc:
        log.warning("running without the load generator's key: one client address, no deposits",
                    extra={"error": str(exc)})
        return None


class LoadGenerator:
    def __init__(self, config: LoadConfig, *, board: FaultBoard | None = None, metrics: MetricSet | None = None,
                 journal: bool = False, clock: Callable[[], float] = time.time, signer: Signer | None = None) -> None:
        """``signer``: the load generator's signing key (default: the lab's). It proves to the
        gateway that the simulated client addresses may be believed, and to accounts that the
        salary deposits come from the lab; without it, traffic comes from one address and
        customers cannot be funded."""
        self.config = config
        self.board = board if board is not None else FaultBoard(None)
        self.clock = clock
        self.signer = signer if signer is not None else _lab_signer()
        if self.signer is not None:
            self.board.authenticate_with(self.signer)
        self.recorder = Recorder(metrics)
        self.recorder.declare_outcomes([*journeys.JOURNEY_STEPS, *FLOOD_STEPS, *SETUP_STEPS, DEPOSIT_STEP])
        self.recorder.declare_journeys({kind: journeys.JOURNEY_FUNNELS[kind] for kind in config.mix.weights})
        self.gateway = HttpClient(config.gateway_url, config.timeout, credentials=self._credentials(c.GATEWAY))
        self.accounts = HttpClient(config.accounts_url, config.timeout, credentials=self._credentials(c.ACCOUNTS))
        self.provisioner = Provisioner(self.gateway, self.accounts, config.password, self._record_setup, clock)
        self.population = Population(build_identities(config.users, config.seed, config.username), self.provisioner,
                                     threads=SETUP_THREADS, on_ready=self._user_ready)
        self.kit = Toolkit(config, self.gateway, self.provisioner, self.recorder,
                           customers=lambda: self.population.ready, clock=clock,
                           journal=[] if journal else None)
        self.flood = FloodController(self.board, self._make_flood, self.recorder, clock)

        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._wake = threading.Condition(self._lock)
        self._ready: deque[JourneyRun] = deque()
        self._sleeping: list[tuple[float, int, JourneyRun]] = []
        self._sequence = itertools.count()
        self._active = 0
        self._accepting = True
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._weights: list[float] = []      # cumulative activity of the ready customers
        self._weighted: list[User] = []
        self.phase = "idle"
        self.started_at: float | None = None          # monotonic
        self.traffic_started_at: float | None = None  # monotonic, first customer ready
        self.current_target = 0.0
        self.stop_reason: str | None = None
        self.drained = threading.Event()

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> LoadGenerator:
        self.started_at = time.monotonic()
        self.phase = "setup"
        self.population.start()
        self.flood.start()
        threads = [threading.Thread(target=self._pace, name="loadgen-pacer", daemon=True)]
        threads += [threading.Thread(target=self._run_steps, name=f"loadgen-worker-{i}", daemon=True)
                    for i in range(self.config.concurrency)]
        for thread in threads:
            thread.start()
        self._threads = threads
        return self

    def finish_starting(self, reason: str) -> None:
        """Start no more journeys; the ones under way finish without thinking."""
        with self._lock:
            if not self._accepting:
                return
            self._accepting = False
            self.stop_reason = reason
            self.phase = "finishing"
            self.kit.hurry = True
            while self._sleeping:
                self._ready.append(heapq.heappop(self._sleeping)[2])
            self._work.notify_all()
            if self._active == 0:
                self.drained.set()

    def stop(self, *, drain: bool = True, timeout: float = 30.0) -> None:
        self.finish_starting("stopped")
        if drain:
            self.drained.wait(timeout)
        with self._lock:
            self._stopping = True
            self._work.notify_all()
            self._wake.notify_all()
        self.population.stop()
        self.flood.stop()
        deadline = time.monotonic() + 2.0
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.phase = "stopped"
        self.recorder.target_rate.set(0)
        self.recorder.active_journeys.set(0)

    @property
    def active_journeys(self) -> int:
        return self._active

    @property
    def journal(self) -> list[dict] | None:
        return self.kit.journal

    # --- customers ---------------------------------------------------------------------------------

    def _record_setup(self, step: str, outcome: str, seconds: float) -> None:
        self.recorder.request(step, outcome, seconds, kind="setup" if step in SETUP_STEPS else "journey")

    def _user_ready(self, user: User) -> None:
        with self._lock:
            self._weighted.append(user)
            self._weights.append((self._weights[-1] if self._weights else 0.0) + user.identity.activity)
            if self.traffic_started_at is None:
                self.traffic_started_at = time.monotonic()
                if self._accepting:
                    self.phase = "running"
        self.recorder.users_ready.set(len(self._weighted))

    def _pick_user(self, rng: random.Random) -> User | None:
        """A ready customer, the more active ones more often."""
        with self._lock:
            if not self._weights:
                return None
            index = bisect.bisect_right(self._weights, rng.random() * self._weights[-1])
            return self._weighted[min(index, len(self._weighted) - 1)]

    def _credentials(self, audience: str) -> Callable[[], dict[str, str]] | None:
        signer = self.signer
        return None if signer is None else (lambda: signer.headers(audience))

    def _make_flood(self, fault: Fault, started: float) -> FloodEngine:
        return FloodEngine(self.config.gateway_url, fault, recorder=self.recorder,
                           ramp_seconds=self.config.flood_ramp_seconds, threads=self.config.flood_threads,
                           login_rps=self.config.flood_login_rps, seed=self.config.seed, started=started,
                           credentials=self._credentials(c.GATEWAY))

    # --- pacing --------------------------------------------------------------------------------------

    def _bound_reached(self, now: float) -> str | None:
        config = self.config
        if config.max_requests is not None and self.recorder.requests_sent >= config.max_requests:
            return f"{config.max_requests} requests sent"
        if (config.duration is not None and self.traffic_started_at is not None
                and now - self.traffic_started_at >= config.duration):
            return f"ran for {config.duration:g}s"
        return None

    def _pace(self) -> None:
        rng = random.Random(f"pacer:{self.config.seed}")
        arrivals = Arrivals(rng)
        rate = -1.0
        next_start = math.inf
        while True:
            now = time.monotonic()
            with self._lock:
                if self._stopping:
                    return
                while self._sleeping and self._sleeping[0][0] <= now:
                    self._ready.append(heapq.heappop(self._sleeping)[2])
                    self._work.notify()
                accepting = self._accepting
                self.recorder.active_journeys.set(self._active)
            reason = self._bound_reached(now) if accepting else None
            if reason is not None:
                self.finish_starting(reason)
                accepting = False
            wanted = 0.0
            if accepting and self.traffic_started_at is not None:
                wanted = target_rate(self.config.rate, self.clock(), flat=self.config.flat,
                                     surge=surge_factor(self.board))
            if wanted != self.current_target or rate < 0:
                self.recorder.target_rate.set(round(wanted, 4))
                self.current_target = wanted
            # A changed rate redraws the pending gap (exponential gaps are memoryless).
            if rate < 0 or abs(wanted - rate) > 0.01 * max(rate, 1e-9):
                rate = wanted
                next_start = now + arrivals.gap(rate)
            while accepting and now >= next_start:
                self._start_journey(rng)
                next_start += arrivals.gap(rate)
                if now - next_start > 1.0:
                    next_start = now   # the pacer fell behind (a stalled process): do not burst
            with self._lock:
                if self._stopping:
                    return
                wake_at = min(next_start, now + PACER_TICK_SECONDS)
                if self._sleeping:
                    wake_at = min(wake_at, self._sleeping[0][0])
                delay = wake_at - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)

    def _start_journey(self, rng: random.Random) -> None:
        kind = self.config.mix.choose(rng)
        user = None
        if kind in NEEDS_CUSTOMER:
            user = self._pick_user(rng)
            if user is None:
                return
        session = Session(self.kit, user, random.Random(rng.getrandbits(64)), kind)
        with self._lock:
            busy = len(self._ready) >= self.config.concurrency or self._active >= MAX_ACTIVE_JOURNEYS
            if not busy:
                self._active += 1
                self._ready.append(JourneyRun(kind, JOURNEY_FUNCTIONS[kind](session)))
                self._work.notify()
        if busy:
            self.recorder.journey(kind, JOURNEY_DROPPED)
        else:
            self.recorder.journey_started(kind)

    # --- workers ---------------------------------------------------------------------------------------

    def _run_steps(self) -> None:
        try:
            self._run_until_stopped()
        finally:
            self.gateway.close()
            self.accounts.close()

    def _run_until_stopped(self) -> None:
        while True:
            with self._lock:
                while not self._ready and not self._stopping:
                    self._work.wait()
                if self._stopping:
                    return
                run = self._ready.popleft()
            think = run.advance()
            if think is None:
                self.recorder.journey(run.kind, run.outcome, run.problem)
                with self._lock:
                    self._active -= 1
                    if not self._accepting and self._active == 0:
                        self.drained.set()
                continue
            with self._lock:
                if think <= 0 or self.kit.hurry:
                    self._ready.append(run)
                    self._work.notify()
                else:
                    heapq.heappush(self._sleeping, (time.monotonic() + think, next(self._sequence), run))
                    self._wake.notify()
