"""A thread-safe circuit breaker for calls to another service.

Written here rather than taken from pybreaker: pybreaker holds its lock for the whole guarded
call, which would serialise every request a multi-threaded worker makes to a peer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(Exception):
    """The breaker is open: the call was not attempted."""


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; after ``reset_timeout`` seconds one
    trial call is let through (half-open): success closes the breaker, failure re-opens it.

    >>> breaker = CircuitBreaker("fraud", failure_threshold=2, reset_timeout=30)
    >>> breaker.record_failure(); breaker.record_failure()
    >>> breaker.state
    <BreakerState.OPEN: 'open'>
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 10.0,
        on_change: Callable[[BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if reset_timeout <= 0:
            raise ValueError(f"reset_timeout must be > 0, got {reset_timeout}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go ahead now."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return
            if self._state is BreakerState.OPEN:
                if self._clock() - self._opened_at < self.reset_timeout:
                    raise CircuitOpenError(f"circuit to {self.name} is open")
                self._set(BreakerState.HALF_OPEN)
            if self._trial_in_flight:
                raise CircuitOpenError(f"circuit to {self.name} is half-open, trial call in flight")
            self._trial_in_flight = True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._trial_in_flight = False
            if self._state is not BreakerState.CLOSED:
                self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            self._trial_in_flight = False
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold
            ):
                self._opened_at = self._clock()
                self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(state)
