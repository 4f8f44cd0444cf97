"""Password hashing within a memory budget, and Argon2 settings checked before auth serves.

Every Argon2id hash (registration, login, rehash, and the decoy for unknown usernames) holds
``memory_cost`` KiB while it runs: 64 MiB with argon2-cffi's defaults. With 16 server threads,
8 simultaneous logins took auth past 500 MiB. :class:`HashingGate` lets at most
``OBSLAB_AUTH_HASH_MEMORY_MIB // memory_cost`` hashes run at once (2 with the defaults: 128 MiB
budget, 64 MiB per hash); a request waits at most ``OBSLAB_AUTH_HASH_WAIT_SECONDS`` (2 s) for a
slot and is then answered 503 ``overloaded`` with ``Retry-After``, never a 500 nor an
out-of-memory kill. Registrations never hold every slot at once (with two or more), so a flood
of sign-ups, which anyone can send, cannot keep existing customers from logging in.

Settings (environment; obslab/settings.py, docs/settings.md): ``OBSLAB_ARGON2_TIME_COST``,
``OBSLAB_ARGON2_MEMORY_KIB`` (argon2-cffi's defaults unless set), ``OBSLAB_AUTH_HASH_MEMORY_MIB``,
``OBSLAB_AUTH_HASH_WAIT_SECONDS``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error

from obslab import settings
from obslab.settings import ConfigError

OVERLOADED_RETRY_AFTER_SECONDS = 1
# Argon2 (RFC 9106, and the reference library argon2-cffi wraps) refuses fewer than 8 KiB per lane.
MIN_KIB_PER_LANE = 8
MAX_TIME_COST = 1000


class Overloaded(Exception):
    """No hashing slot became free in time."""

    retry_after_seconds = OVERLOADED_RETRY_AFTER_SECONDS


class HashingGate:
    """At most ``slots`` hashes at once; a caller waits at most ``wait_seconds`` for one.

    >>> gate = HashingGate(slots=1, wait_seconds=0)
    >>> with gate.slot():
    ...     try:
    ...         with gate.slot():
    ...             pass
    ...     except Overloaded:
    ...         print("busy")
    busy
    >>> gate.peak, gate.in_use, gate.refused
    (1, 0, 1)
    """

    def __init__(self, slots: int, wait_seconds: float) -> None:
        if slots < 1:
            raise ValueError(f"a hashing gate needs at least one slot, got {slots}")
        self.slots = slots
        self.wait_seconds = wait_seconds
        self._free = threading.BoundedSemaphore(slots)
        # One slot stays for logins whenever there is more than one.
        self._registration_slots = threading.BoundedSemaphore(max(1, slots - 1))
        self._lock = threading.Lock()
        self.in_use = 0
        self.peak = 0
        self.refused = 0

    @classmethod
    def for_hasher(cls, hasher: PasswordHasher, budget_mib: int | None = None,
                   wait_seconds: float | None = None) -> HashingGate:
        budget = budget_mib if budget_mib is not None else hash_memory_budget_mib()
        wait = wait_seconds if wait_seconds is not None else settings.AUTH_HASH_WAIT_SECONDS.get()
        return cls(concurrent_hashes(budget, hasher.memory_cost), wait)

    def _acquire(self, semaphore: threading.BoundedSemaphore) -> None:
        if not semaphore.acquire(timeout=self.wait_seconds):
            with self._lock:
                self.refused += 1
            raise Overloaded()

    @contextlib.contextmanager
    def registration_slot(self) -> Iterator[None]:
        """A slot for a new customer's hash: never the last one free for logins."""
        self._acquire(self._registration_slots)
        try:
            with self.slot():
                yield
        finally:
            self._registration_slots.release()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        self._acquire(self._free)
        with self._lock:
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._lock:
                self.in_use -= 1
            self._free.release()


def hash_memory_budget_mib() -> int:
    return settings.AUTH_HASH_MEMORY_MIB.get()


def concurrent_hashes(budget_mib: int, memory_cost_kib: int) -> int:
    """How many hashes of ``memory_cost_kib`` fit in ``budget_mib`` together (at least 1).

    >>> concurrent_hashes(128, 65536), concurrent_hashes(100, 65536), concurrent_hashes(16, 1024)
    (2, 1, 16)
    """
    return max(1, (budget_mib * 1024) // memory_cost_kib)


def password_hasher(budget_mib: int | None = None) -> PasswordHasher:
    """Argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile) unless overridden,
    checked now: a value Argon2 refuses would otherwise pass start-up and fail every login.

    Raises :class:`ConfigError` (one line: which setting, what to change)."""
    defaults = PasswordHasher()
    time_cost = settings.ARGON2_TIME_COST.get(default=defaults.time_cost)
    memory_cost = settings.ARGON2_MEMORY_KIB.get(default=defaults.memory_cost)
    parallelism = defaults.parallelism
    budget = budget_mib if budget_mib is not None else hash_memory_budget_mib()
    minimum = MIN_KIB_PER_LANE * parallelism
    if memory_cost < minimum:
        raise ConfigError(
            f"OBSLAB_ARGON2_MEMORY_KIB={memory_cost} is below what Argon2 accepts: at least "
            f"{MIN_KIB_PER_LANE} KiB per lane x {parallelism} lanes = {minimum}; use e.g. 65536 (64 MiB)")
    if memory_cost > budget * 1024:
        raise ConfigError(
            f"OBSLAB_ARGON2_MEMORY_KIB={memory_cost} ({memory_cost / 1024:g} MiB) does not fit in "
            f"OBSLAB_AUTH_HASH_MEMORY_MIB={budget}: lower the first or raise the second")
    if time_cost > MAX_TIME_COST:
        raise ConfigError(f"OBSLAB_ARGON2_TIME_COST={time_cost} is above {MAX_TIME_COST}: every login would "
                          "take minutes; use 1-10 (argon2-cffi's default is 3)")
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    try:
        hasher.verify(hasher.hash("obslab start-up check"), "obslab start-up check")
    except (Argon2Error, OverflowError, ValueError, MemoryError) as exc:
        raise ConfigError(
            f"Argon2 refuses OBSLAB_ARGON2_TIME_COST={time_cost} OBSLAB_ARGON2_MEMORY_KIB={memory_cost} "
            f"(parallelism {parallelism}): {exc}; unset them to use argon2-cffi's defaults") from None
    return hasher
