"""The DDoS flood: what a ``ddos_flood`` fault on the gateway turns into.

A botnet of ``sources`` distinct addresses sends ``rps`` requests per second in the shape real
volumetric attacks have: a ramp-up over tens of seconds as bots join, a plateau that wobbles,
and periodic pulses. Bots hit what is cheap for them to send: the accounts list without a token
or with a forged one, and the login endpoint with junk. Well-formed junk logins (credential
stuffing) cost the bank an Argon2 verification each, so their rate is capped separately.

The flood stops within about a second of the fault being cleared or expiring: the controller
checks the fault board several times a second and senders check between requests.
"""

from __future__ import annotations

import base64
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from obslab import conventions as c
from obslab.faults.board import FaultBoard
from obslab.faults.model import DEFAULT_FLOOD_SOURCES, Fault
from obslab.services.loadgen.identities import BOT_USER_AGENTS, BotnetSources
from obslab.services.loadgen.recorder import Recorder
from obslab.services.loadgen.transport import HttpClient, TransportError

log = logging.getLogger(__name__)

NO_TOKEN = "flood_no_token"
FORGED_TOKEN = "flood_forged_token"
JUNK_LOGIN = "flood_junk_login"
CREDENTIAL_STUFFING = "flood_credential_stuffing"
FLOOD_STEPS = (NO_TOKEN, FORGED_TOKEN, JUNK_LOGIN, CREDENTIAL_STUFFING)
# (step, share of the flood)
FLOOD_MIX: tuple[tuple[str, float], ...] = (
    (NO_TOKEN, 0.55), (FORGED_TOKEN, 0.15), (JUNK_LOGIN, 0.25), (CREDENTIAL_STUFFING, 0.05),
)
COMMON_USERNAMES = ("admin", "alice", "bob", "test", "user", "root", "info", "support", "john", "maria")
COMMON_PASSWORDS = ("123456", "password", "qwerty123", "Passw0rd!", "letmein1", "iloveyou", "12345678")
FLOOD_TIMEOUT_SECONDS = 2.0
CONTROL_INTERVAL_SECONDS = 0.2
# A sender that falls this far behind its schedule skips ahead rather than bursting to catch up.
MAX_LAG_SECONDS = 0.25


@dataclass(frozen=True)
class FloodShape:
    """Target rate ``elapsed`` seconds into a flood: ramp, jittery plateau, pulses.

    The plateau's long-run mean is ``rps``: the base level sits a little below it so that the
    pulses (``PULSE_BOOST`` for ``PULSE_SECONDS`` every ``PULSE_PERIOD``) bring it back up.

    >>> shape = FloodShape(1000, ramp_seconds=20)
    >>> shape.rate(0) < 50 < 800 < shape.rate(30)
    True
    """

    rps: float
    ramp_seconds: float = 20.0
    seed: int = 0
    phase: float = field(init=False, repr=False)

    START_LEVEL = 0.02
    PULSE_PERIOD = 45.0
    PULSE_SECONDS = 8.0
    PULSE_BOOST = 1.35
    JITTER = ((0.08, 7.3), (0.05, 2.9))      # (amplitude, period in seconds)

    def __post_init__(self) -> None:
        object.__setattr__(self, "phase", random.Random(self.seed).random() * 2 * math.pi)

    @property
    def _base(self) -> float:
        duty = self.PULSE_SECONDS / self.PULSE_PERIOD
        return self.rps / (1 + (self.PULSE_BOOST - 1) * duty)

    def ramp(self, elapsed: float) -> float:
        if self.ramp_seconds <= 0 or elapsed >= self.ramp_seconds:
            return 1.0
        t = max(0.0, elapsed) / self.ramp_seconds
        return self.START_LEVEL + (1 - self.START_LEVEL) * (1 - math.cos(math.pi * t)) / 2

    def rate(self, elapsed: float) -> float:
        if elapsed < 0:
            return 0.0
        jitter = 1.0 + sum(a * math.sin(2 * math.pi * elapsed / period + self.phase * (i + 1))
                           for i, (a, period) in enumerate(self.JITTER))
        after_ramp = elapsed - self.ramp_seconds
        pulsing = after_ramp >= 0 and (after_ramp % self.PULSE_PERIOD) >= self.PULSE_PERIOD - self.PULSE_SECONDS
        return self._base * self.ramp(elapsed) * jitter * (self.PULSE_BOOST if pulsing else 1.0)


def default_threads(rps: float) -> int:
    """Senders for a flood: enough that slow answers do not cap it, few enough for the GIL."""
    return max(2, min(32, math.ceil(rps / 50)))


class _TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = min(1.0, rate)
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        if self.rate <= 0:
            return False
        with self.lock:
            now = time.monotonic()
            self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


def _junk(rng: random.Random, length: int) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(length)).decode().rstrip("=")


def flood_request(step: str, rng: random.Random) -> tuple[str, str, bytes | None, dict[str, str]]:
    """(method, path, body, headers) of one attack request of kind ``step``."""
    if step == NO_TOKEN:
        return "GET", f"{c.API_PREFIX}/accounts", None, {}
    if step == FORGED_TOKEN:
        token = f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{_junk(rng, 48)}.{_junk(rng, 32)}"
        return "GET", f"{c.API_PREFIX}/accounts", None, {"Authorization": f"Bearer {token}"}
    if step == JUNK_LOGIN:
        if rng.random() < 0.5:
            return "POST", f"{c.API_PREFIX}/auth/login", b'{"username": "admin", "password": ', {}
        return "POST", f"{c.API_PREFIX}/auth/login", (
            b'{"user": "' + rng.choice(COMMON_USERNAMES).encode() + b'", "pass": "'
            + rng.choice(COMMON_PASSWORDS).encode() + b'", "remember": true}'), {}
    body = (b'{"username": "' + f"{rng.choice(COMMON_USERNAMES)}{rng.randrange(100)}".encode()
            + b'", "password": "' + rng.choice(COMMON_PASSWORDS).encode() + b'"}')
    return "POST", f"{c.API_PREFIX}/auth/login", body, {}


class FloodEngine:
    """Sender threads for one flood; ``sent`` counts requests (answered or not)."""

    def __init__(self, gateway_url: str, fault: Fault, *, recorder: Recorder, ramp_seconds: float,
                 threads: int | None, login_rps: float, seed: int, started: float,
                 credentials: Callable[[], dict[str, str]] | None = None) -> None:
        self.fault = fault
        self.rps = float(fault.param("rps", 100))
        self.source_count = int(fault.param("sources", DEFAULT_FLOOD_SOURCES))
        self.recorder = recorder
        self.shape = FloodShape(self.rps, ramp_seconds, seed)
        self.threads = threads or default_threads(self.rps)
        self.client = HttpClient(gateway_url, timeout=FLOOD_TIMEOUT_SECONDS, credentials=credentials)
        rng = random.Random(f"flood:{seed}:{fault.id}")
        self.sources = BotnetSources(self.source_count, rng)
        self.started = started          # monotonic time the flood (not this engine) began
        self._logins = _TokenBucket(login_rps)
        self._stop = threading.Event()
        self._counts = [0] * self.threads
        self._workers: list[threading.Thread] = []
        self._seed = seed
        self._steps = [step for step, _ in FLOOD_MIX]
        self._weights = [share for _, share in FLOOD_MIX]

    @property
    def key(self) -> tuple:
        return (self.fault.id, self.rps, self.source_count)

    @property
    def sent(self) -> int:
        return sum(self._counts)

    def start(self) -> None:
        for i in range(self.threads):
            worker = threading.Thread(target=self._send_loop, args=(i,), name=f"loadgen-flood-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self, wait: float = 0.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + wait
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))

    def _send_loop(self, index: int) -> None:
        try:
            self._send_until_stopped(index)
        finally:
            self.client.close()

    def _send_until_stopped(self, index: int) -> None:
        rng = random.Random(f"{self._seed}:{self.fault.id}:{index}")
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            rate = self.shape.rate(now - self.started) / self.threads
            if rate <= 0:
                self._stop.wait(0.05)
                next_at = time.monotonic()
                continue
            next_at += rng.expovariate(rate)
            if next_at < now - MAX_LAG_SECONDS:
                next_at = now
            delay = next_at - now
            if delay > 0 and self._stop.wait(min(delay, 0.5)):
                break
            if delay > 0.5:
                next_at = time.monotonic()   # re-plan at the (possibly new) rate
                continue
            self._send_one(index, rng)

    def _send_one(self, index: int, rng: random.Random) -> None:
        step = rng.choices(self._steps, weights=self._weights)[0]
        if step == CREDENTIAL_STUFFING and not self._logins.take():
            step = JUNK_LOGIN
        method, path, body, headers = flood_request(step, rng)
        source = self.sources.pick(rng)
        headers[c.HEADER_FORWARDED_FOR] = source
        agent = BOT_USER_AGENTS[hash(source) % len(BOT_USER_AGENTS)]
        if agent:
            headers["User-Agent"] = agent
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            reply = self.client.request(method, path, body=body, headers=headers)
            self.recorder.request(step, reply.outcome, reply.seconds, kind="flood")
        except TransportError as exc:
            self.recorder.request(step, exc.outcome, exc.seconds, kind="flood")
            self._stop.wait(0.05)   # a gateway that refuses connections is not hammered in a tight loop
        self._counts[index] += 1


class FloodController:
    """Starts, changes and stops the flood as ``ddos_flood`` faults on the gateway come and go."""

    def __init__(self, board: FaultBoard, make_engine: Callable[[Fault, float], FloodEngine],
                 recorder: Recorder, clock: Callable[[], float] = time.time) -> None:
        self.board = board
        self.make_engine = make_engine
        self.recorder = recorder
        self.clock = clock
        self.engine: FloodEngine | None = None
        self.achieved = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="loadgen-flood-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._switch(None)

    @property
    def active(self) -> bool:
        return self.engine is not None

    def describe(self) -> str:
        engine = self.engine
        if engine is None:
            return "flood off"
        return f"flood {self.achieved:.0f}/{engine.rps:.0f} rps from {engine.source_count} sources"

    def _switch(self, fault: Fault | None) -> None:
        old, self.engine = self.engine, None
        if old is not None:
            old.stop()
            log.info("flood stopped", extra={"fault": old.fault.id, "sent": old.sent})
        if fault is not None:
            # A flood already under way (e.g. this process restarted) continues where its shape is.
            age = max(0.0, self.clock() - fault.created_at) if fault.created_at else 0.0
            engine = self.make_engine(fault, time.monotonic() - age)
            engine.start()
            self.engine = engine
            log.info("flood started", extra={"fault": fault.id, "rps": engine.rps, "sources": engine.source_count,
                                             "threads": engine.threads})
        self.achieved = 0.0
        self.recorder.flood_rate.set(0)

    def _run(self) -> None:
        last_sent, last_time = 0, time.monotonic()
        while not self._stop.wait(CONTROL_INTERVAL_SECONDS):
            fault = self.board.find(c.FaultKind.DDOS_FLOOD, c.GATEWAY)
            engine = self.engine
            if fault is None and engine is not None:
                self._switch(None)
            elif fault is not None and (engine is None or engine.key != (fault.id, float(fault.param("rps", 100)),
                                                                          int(fault.param("sources",
                                                                                          DEFAULT_FLOOD_SOURCES)))):
                self._switch(fault)
                last_sent, last_time = 0, time.monotonic()
            engine = self.engine
            now = time.monotonic()
            if engine is not None and now - last_time >= 1.0:
                sent = engine.sent
                self.achieved = (sent - last_sent) / (now - last_time)
                self.recorder.flood_rate.set(round(self.achieved, 1))
                last_sent, last_time = sent, now
