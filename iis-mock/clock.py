"""The IIS mock's clock: simulated time that may run faster than real time.

``sim_time = start + speed x real seconds elapsed``. At speed 1 (the lab) the simulated estate
lives in the present; tests and demos run a simulated day in a minute (speed 1440) without
changing anything else. Environment (argument > environment > default; obslab/settings.py,
docs/settings.md): ``OBSLAB_IIS_SPEED``, ``OBSLAB_IIS_START``, ``OBSLAB_IIS_SEED`` and
``OBSLAB_IIS_STEP_SECONDS`` (default: max(1, speed / 100), so a fast clock costs at most 100
steps per real second).

>>> ticks = iter([100.0, 101.0])
>>> clock = SimClock(start=1_795_000_000.0, speed=60.0, real=lambda: next(ticks))
>>> clock.now() - 1_795_000_000.0   # one real second later: a simulated minute
60.0
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from obslab import settings

MAX_STEPS_PER_REAL_SECOND = 100


class SimClock:
    def __init__(self, start: float, speed: float = 1.0, *,
                 real: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise settings.ConfigError(f"the IIS mock's clock speed must be above 0, got {speed}")
        self.start = float(start)
        self.speed = float(speed)
        self._real = real
        self._real_start = real()

    def now(self) -> float:
        return self.start + self.speed * (self._real() - self._real_start)


def parse_time(text: str) -> float:
    """ISO 8601 (``2026-11-23T09:00:00Z``, offset optional and UTC if absent) -> Unix seconds."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise settings.ConfigError(
            f"expected an ISO 8601 time such as 2026-11-23T09:00:00Z, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def clock_from_environment() -> SimClock:
    speed = settings.IIS_SPEED.get()
    raw_start = settings.IIS_START.get()
    start = parse_time(raw_start) if raw_start else time.time()
    return SimClock(start, speed)


def seed_from_environment() -> int:
    return settings.IIS_SEED.get()


def step_from_environment(speed: float) -> float:
    return settings.IIS_STEP_SECONDS.get(default=max(1.0, speed / MAX_STEPS_PER_REAL_SECOND))
