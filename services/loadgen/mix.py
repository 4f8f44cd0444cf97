"""Which journeys the simulated customers run, and how often each one relative to the others.

Weights come from what an online bank sees: most sessions only look (balances, history), a
quarter move money, a tenth pay a bill or a card, and a few fail to log in or sign up.

>>> import random
>>> mix = JourneyMix.parse("transfer=3,pay=1")
>>> mix.shares()
{'transfer': 0.75, 'pay': 0.25}
>>> mix.choose(random.Random(1)) in ("transfer", "pay")
True
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping

from obslab.settings import ConfigError

CHECK_BALANCES = "check_balances"
HISTORY = "history"
TRANSFER = "transfer"
PAY = "pay"
FAILED_LOGIN = "failed_login"
REGISTER = "register"

JOURNEYS: tuple[str, ...] = (CHECK_BALANCES, HISTORY, TRANSFER, PAY, FAILED_LOGIN, REGISTER)

DEFAULT_WEIGHTS: dict[str, float] = {
    CHECK_BALANCES: 40.0,
    HISTORY: 20.0,
    TRANSFER: 25.0,
    PAY: 10.0,
    FAILED_LOGIN: 3.0,
    REGISTER: 2.0,
}


class JourneyMix:
    """A weighted choice among journeys; weights need not sum to anything in particular."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        unknown = sorted(set(weights) - set(JOURNEYS))
        if unknown:
            raise ConfigError(f"unknown journey {unknown[0]!r} in the mix; choose from: {', '.join(JOURNEYS)}")
        for name, weight in weights.items():
            if not weight >= 0:  # also refuses NaN
                raise ConfigError(f"journey weight of {name} must be >= 0, got {weight}")
        self.weights = {name: float(w) for name, w in weights.items() if w > 0}
        if not self.weights:
            raise ConfigError("the journey mix needs at least one journey with a weight above 0")
        self._names = list(self.weights)
        total = sum(self.weights.values())
        running = 0.0
        self._cumulative: list[float] = []
        for name in self._names:
            running += self.weights[name] / total
            self._cumulative.append(running)
        self._cumulative[-1] = 1.0

    @classmethod
    def default(cls) -> JourneyMix:
        return cls(DEFAULT_WEIGHTS)

    @classmethod
    def parse(cls, text: str | None) -> JourneyMix:
        """``"transfer=50,pay=50"`` -> a mix of only those journeys; empty text -> the default mix."""
        if text is None or not text.strip():
            return cls.default()
        weights: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, sep, raw = part.partition("=")
            if not sep:
                raise ConfigError(f"journey mix entry {part!r} must look like NAME=WEIGHT, e.g. transfer=25")
            try:
                weights[name.strip()] = float(raw)
            except ValueError:
                raise ConfigError(f"journey mix weight of {name.strip()} must be a number, got {raw!r}") from None
        return cls(weights)

    def choose(self, rng: random.Random) -> str:
        return self._names[bisect.bisect_right(self._cumulative, rng.random())]

    def shares(self) -> dict[str, float]:
        total = sum(self.weights.values())
        return {name: weight / total for name, weight in self.weights.items()}

    def describe(self) -> str:
        return ", ".join(f"{name} {share:.0%}" for name, share in self.shares().items())

    def __repr__(self) -> str:
        return f"JourneyMix({self.weights!r})"
