"""How many journeys start per second, and when the next one starts.

Open loop: customers arrive as a Poisson process whatever the bank's response times, so a slow
bank sees the same demand (and a growing backlog) instead of politely less traffic. The rate is
the base rate times the week's shape (:mod:`obslab.sim.seasonality`) times an active volume surge.

>>> round(target_rate(2.0, 0.0, flat=True, surge=3.0), 2)
6.0
"""

from __future__ import annotations

import math
import random

from obslab import conventions as c
from obslab.faults.board import FaultBoard
from obslab.sim import seasonality


def target_rate(base: float, now: float, *, flat: bool = False, surge: float = 1.0) -> float:
    """Journey starts per second at Unix time ``now``."""
    shape = 1.0 if flat else float(seasonality.multiplier(now))
    return base * shape * surge


def surge_factor(board: FaultBoard | None) -> float:
    """The factor of an active ``volume_surge`` on the gateway, 1.0 when there is none."""
    if board is None:
        return 1.0
    fault = board.find(c.FaultKind.VOLUME_SURGE, c.GATEWAY)
    if fault is None:
        return 1.0
    return max(1.0, float(fault.param("factor", 1.0)))


class Arrivals:
    """Gaps of a Poisson process whose rate may change between two arrivals.

    Exponential gaps are memoryless, so when the rate changes the pending gap may be redrawn at
    the new rate from "now" without bending the process.

    >>> arrivals = Arrivals(random.Random(7))
    >>> arrivals.gap(0.0)
    inf
    >>> 0 < arrivals.gap(10.0) < 5
    True
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def gap(self, rate: float) -> float:
        if rate <= 0:
            return math.inf
        return self.rng.expovariate(rate)
