"""What every baselining algorithm is: fit on history, score a stream, explain its band.

Series are batched: ``values`` has shape ``(n_series, n_points)`` with one shared, increasing
``timestamps`` vector (Unix seconds) of length ``n_points``; a gap (Prometheus returned nothing
for that step) is ``NaN``. Batching is what lets the baseliner refit 1,000 series inside its
cycle: an algorithm works on whole arrays, never on one point at a time in Python.

Two ways to use an algorithm, with the same maths:

- :meth:`BaselineAlgorithm.causal` — the streaming detector the NAB benchmark runs: the band at
  column ``t`` is computed from columns ``< t`` only (no look-ahead), and the value at ``t`` is
  scored against it.
- :meth:`BaselineAlgorithm.fit` then :meth:`Baseline.bands` — what the baseliner service does
  every refit: learn from the last hours, then forecast the band for the coming timestamps and
  score each new scrape against it until the next refit.

Every band is ``expected`` with ``lower <= expected <= upper``. The anomaly score of a value
is :func:`deviation_score`: 0 on the expected value, 0.5 on the band's edge, towards 1 far
outside, the same scale for every algorithm so that an ensemble can combine them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Bands:
    """Per point: the expected value, the band around it and the observed value's score.

    All four arrays share the shape of the scored ``values``. Where an algorithm has too little
    data yet (the first points of a stream), it returns ``NaN`` for the band and 0 for the score.
    """

    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    score: np.ndarray


def deviation_score(values: np.ndarray, expected: np.ndarray, lower: np.ndarray,
                    upper: np.ndarray) -> np.ndarray:
    """0 at ``expected``, 0.5 on the band's edge, ``d / (1 + d)`` with ``d`` the distance in
    half-band widths (above: towards ``upper``, below: towards ``lower``); 0 where undefined.

    >>> float(deviation_score(np.array([12.0]), np.array([10.0]), np.array([8.0]), np.array([12.0]))[0])
    0.5
    """
    values, expected = np.asarray(values, float), np.asarray(expected, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        above = (values - expected) / (np.asarray(upper, float) - expected)
        below = (expected - values) / (expected - np.asarray(lower, float))
        distance = np.where(values >= expected, above, below)
        # A zero-width band (a constant series): any difference is far outside it.
        distance = np.where(np.isinf(distance), 1e6, distance)
        score = distance / (1.0 + distance)
    return np.where(np.isfinite(score) & (score > 0), score, 0.0)


@runtime_checkable
class Baseline(Protocol):
    """A fitted algorithm: the band it expects at given (future) timestamps."""

    def bands(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(expected, lower, upper)``, each of shape ``(n_series, len(timestamps))``."""
        ...


@runtime_checkable
class BaselineAlgorithm(Protocol):
    """One baselining algorithm. ``name`` is the ``algorithm`` label value of its gauges."""

    name: str
    summary: str   # one line: what it models and when it is the right choice

    def causal(self, values: np.ndarray, timestamps: np.ndarray) -> Bands:
        """Streaming detection over the whole array with no look-ahead."""
        ...

    def fit(self, values: np.ndarray, timestamps: np.ndarray) -> Baseline:
        """Learn from history (``values`` of shape ``(n_series, n_points)``)."""
        ...


def score_against(baseline: Baseline, values: np.ndarray, timestamps: np.ndarray) -> Bands:
    """Score observed ``values`` against a fitted baseline's forecast for their timestamps."""
    expected, lower, upper = baseline.bands(timestamps)
    return Bands(expected, lower, upper, deviation_score(values, expected, lower, upper))
