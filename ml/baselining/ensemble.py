"""The ensemble: per point, the median of the algorithms' bands, and the score against it.

Why the median of bands and not, say, the mean or maximum of scores: the recommended threshold
has to be a band an operator can read ("expected 120 req/s, alert above 180"), and a median
of the members' lowers, expecteds and uppers is one. It is robust to one member going wild -
the seasonal median on the day after a level shift, a z-score band blown up by a spike,
Holt-Winters mid re-seed: with four members the median is the mean of the middle two, so one
extreme member moves it by at most the gap between the two middle members. The score is then
the protocol's ``deviation_score`` against that band, on the same scale as every member's.

Order is preserved: if every member has ``lower <= expected <= upper``, the k-th smallest lower
is at most the k-th smallest expected, so the medians keep ``lower <= expected <= upper``. A
member without a band at a point (warming up, a gap) is left out there; with fewer than
``min_members`` members left the ensemble has no band either.

``combine`` takes members' results that were already computed, so that a service publishing
every algorithm and the ensemble pays for each algorithm once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from obslab.ml.baselining._common import as_batch, as_future, clean_band, finish
from obslab.ml.protocol import Bands, Baseline, BaselineAlgorithm


@dataclass(frozen=True)
class Ensemble:
    """Median band of several algorithms.

    >>> import numpy as np
    >>> from obslab.ml.baselining import ALGORITHMS
    >>> ts = np.arange(1000) * 15.0
    >>> noise = np.random.default_rng(5).normal(50, 2, size=(2, 1000))
    >>> bands = Ensemble(ALGORITHMS).causal(noise, ts)
    >>> bool(np.all(bands.lower[:, -1] <= bands.expected[:, -1]))
    True
    """

    name: ClassVar[str] = "ensemble"
    summary: ClassVar[str] = ("per-point median of the algorithms' bands: the recommended "
                              "threshold, robust to any one algorithm going wild")

    algorithms: tuple[BaselineAlgorithm, ...]
    min_members: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithms", tuple(self.algorithms))
        if not self.algorithms:
            raise ValueError("Ensemble: give at least one algorithm")
        if not 1 <= self.min_members <= len(self.algorithms):
            raise ValueError(f"Ensemble: min_members must be between 1 and "
                             f"{len(self.algorithms)}, got {self.min_members}")

    def causal(self, values: np.ndarray, timestamps: np.ndarray) -> Bands:
        values, timestamps = as_batch(values, timestamps)
        return self.combine([a.causal(values, timestamps) for a in self.algorithms], values)

    def fit(self, values: np.ndarray, timestamps: np.ndarray) -> EnsembleBaseline:
        values, timestamps = as_batch(values, timestamps)
        return EnsembleBaseline([a.fit(values, timestamps) for a in self.algorithms],
                                self.min_members)

    def combine(self, members: Sequence[Bands], values: np.ndarray) -> Bands:
        """The ensemble of members' streaming results (one per algorithm, same shapes)."""
        expected, lower, upper = median_band(
            [(m.expected, m.lower, m.upper) for m in members], self.min_members)
        values = np.asarray(values, dtype=float)
        return finish(np.where(np.isfinite(values), values, np.nan), expected, lower, upper)


class EnsembleBaseline:
    """The members' fitted baselines; ``bands`` is the median of their forecasts."""

    def __init__(self, baselines: Sequence[Baseline], min_members: int) -> None:
        self.baselines = tuple(baselines)
        self._min_members = min_members

    def bands(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        timestamps = as_future(timestamps)
        return self.combine([b.bands(timestamps) for b in self.baselines])

    def combine(self, forecasts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ensemble of forecasts already taken from ``self.baselines`` (in that order)."""
        return median_band(forecasts, self._min_members)


def median_band(members: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                min_members: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point medians of the members' ``(expected, lower, upper)``, NaN members left out."""
    if not members:
        raise ValueError("median_band: give at least one member band")
    count = np.zeros(np.shape(members[0][0]), dtype=np.int64)
    for expected, _, _ in members:
        count += np.isfinite(expected)
    # Members keep the protocol (all-or-nothing NaN, lower <= expected <= upper), so one count
    # serves all three medians and the medians of the same members keep the order; the final
    # clean_band only guards against a member that does not.
    missing = count < min_members
    medians = []
    for i in range(3):
        median = _nan_median([np.asarray(member[i], dtype=float) for member in members], count)
        median[missing] = np.nan
        medians.append(median)
    return clean_band(medians[0], medians[1], medians[2])


def _nan_median(arrays: list[np.ndarray], count: np.ndarray) -> np.ndarray:
    """Median across a handful of same-shape arrays, ignoring NaN, where ``count`` are defined.

    A compare-exchange sorting network (odd-even transposition) over whole arrays: ``fmin``
    keeps the number and ``maximum`` the NaN of a pair, so gaps sink to the end without a
    substitution pass. For the 4-5 members of an ensemble this is several times faster than
    ``np.nanmedian`` or a sort along a stacked axis. Where every member is defined (nearly
    everywhere) the middle is read directly; the few other points are gathered.
    """
    ordered = list(arrays)
    n = len(ordered)
    for round_ in range(n):
        for i in range(round_ % 2, n - 1, 2):
            low = np.fmin(ordered[i], ordered[i + 1])
            ordered[i + 1] = np.maximum(ordered[i], ordered[i + 1])
            ordered[i] = low
    median = ordered[(n - 1) // 2] + ordered[n // 2]
    median *= 0.5
    partial = np.flatnonzero(count.ravel() < n)
    if partial.size:
        flat_median = median.reshape(-1)
        partial_count = count.ravel()[partial]
        stacked = np.stack([o.reshape(-1)[partial] for o in ordered])
        low = stacked[np.maximum(partial_count - 1, 0) // 2, np.arange(partial.size)]
        high = stacked[np.minimum(partial_count // 2, n - 1), np.arange(partial.size)]
        flat_median[partial] = np.where(partial_count > 0, (low + high) * 0.5, np.nan)
    return median
