"""Level novelty: a streaming detector that flags the first visit of a value range never seen.

What it models: the ranges a series has visited so far, at several resolutions at once. The
learning period fixes a unit (its range divided into ``levels - 1`` steps, for each ``levels`` of
:attr:`LevelNovelty.resolutions`); every value then falls into a bin of each resolution, and a
bin the series has never been in is news. The score of a point is the share of resolutions at
which its bin is new: 1 for a value far outside everything seen (new at every resolution), a
fraction for a value that only a fine resolution tells apart, 0 for a familiar level.

Why it works as a streaming detector (the ML README has the ablations): most incidents in
operations data take a series somewhere it has not been (a spike, a level shift, a drop to
nothing), and "never seen before" needs no distribution assumption, no seasonality model and no
threshold per series: the same parameters serve every file of NAB. Several resolutions, averaged,
make the score graded and keep any single bin width from deciding alone. After an alarm (a
majority of resolutions agree) the detector rests for 30 % of its learning period (NAB's CAD
OSE rests a fifth; the ML README has the curve): the alarm has been raised, and the points that follow an incident are its
aftermath, not new incidents (NAB counts every point above the threshold outside a window as
one more false positive). Only a stronger point alarms during the rest: news at more
resolutions, or at as many and at least twice as far beyond everything seen before.

When it fails: anomalies inside the familiar range (a missing daily peak, a change of rhythm or
of noise) never make a new bin, and a slow drift to new levels alarms once per step of drift.

Causal by construction: the bins of point ``t`` come from the learning period and the points
before ``t``; the learning period is NAB's probationary period (15 % of the stream, at most 750
points) unless ``learn_points`` fixes it.

>>> import numpy as np
>>> ts = np.arange(1000) * 300.0
>>> values = np.sin(ts / 3600)[None, :]
>>> values[0, 800] = 5.0                       # far outside anything seen
>>> score = LevelNovelty().causal(values, ts).score[0]
>>> float(score[800]), float(score[801:].max())
(1.0, 0.0)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from obslab.ml.baselining._common import FlatBaseline, as_batch, clean_band, shift_right
from obslab.ml.protocol import Bands

# NAB's probationary period: 15 % of a file, at most 750 rows (nab/sweeper.py).
PROBATION_SHARE = 0.15
PROBATION_MAX_POINTS = 750
# During a rest, as news but this many times as far beyond everything seen: a new alarm.
REALARM_FACTOR = 2.0
# The live form: the unit comes from this range of the reference, and a level is familiar once
# the reference visited it this many times.
REFERENCE_QUANTILES = (0.05, 0.95)
FAMILIAR_VISITS = 3


def probation_points(n_points: int) -> int:
    return int(min(np.floor(PROBATION_SHARE * n_points), PROBATION_MAX_POINTS))


@dataclass(frozen=True)
class LevelNovelty:
    """The share of ``resolutions`` at which a value's bin is new; rests after an alarm."""

    name: ClassVar[str] = "levelNovelty"
    summary: ClassVar[str] = ("first visits of value ranges never seen, at several resolutions: "
                              "spikes, level shifts and drops in any series, no model of normal")

    resolutions: tuple[int, ...] = (6, 8, 10, 12, 16, 20, 24, 32)
    alarm: float = 0.5              # a majority of resolutions: an alarm, then the rest period
    rest_share: float = 0.3         # of the learning period (CAD OSE rests 1/5; the ML README has the curve)
    learn_points: int | None = None
    min_learn_points: int = 10

    # A series with a daily rhythm (its learning period correlates at least this well with itself
    # one day later) is also watched for news in its change since the same time yesterday, which
    # counts this much: an anomaly inside the familiar range (a missing peak, a flat day).
    rhythm_correlation: float = 0.5
    rhythm_weight: float = 0.7

    def __post_init__(self) -> None:
        if not self.resolutions or min(self.resolutions) < 2:
            raise ValueError("resolutions must be at least 2 levels each")
        if not 0 < self.alarm <= 1 or self.rest_share < 0:
            raise ValueError("alarm must be in (0, 1] and rest_share >= 0")

    def learning(self, n_points: int) -> int:
        wanted = self.learn_points if self.learn_points is not None else probation_points(n_points)
        return max(self.min_learn_points, min(wanted, n_points))

    def causal(self, values: np.ndarray, timestamps: np.ndarray) -> Bands:
        values, timestamps = as_batch(values, timestamps)
        n_series, n_points = values.shape
        learn = self.learning(n_points)
        score = np.zeros_like(values)
        period = _daily_period(timestamps[:learn])      # the learning period's step: no look-ahead
        for row in range(n_series):
            news = self._novelty(values[row], learn)
            change = self._daily_change(values[row], period, learn)
            if change is not None:
                news = np.maximum(news, self.rhythm_weight * self._novelty(change, learn, unit_from=period))
            score[row] = self._rested(news, values[row], learn)
        # The band shows the range seen before each point: what "familiar" meant then.
        with np.errstate(invalid="ignore"):
            lower = shift_right(np.fmin.accumulate(np.where(np.isnan(values), np.inf, values), axis=1))
            upper = shift_right(np.fmax.accumulate(np.where(np.isnan(values), -np.inf, values), axis=1))
        unseen = ~np.isfinite(lower) | ~np.isfinite(upper)
        unseen[:, :self.min_learn_points] = True
        lower, upper = np.where(unseen, np.nan, lower), np.where(unseen, np.nan, upper)
        expected, lower, upper = clean_band((lower + upper) / 2, lower, upper)
        return Bands(expected, lower, upper, score)

    def fit(self, values: np.ndarray, timestamps: np.ndarray) -> FlatBaseline:
        """The range the history visited (a value outside it is a first visit), its middle as
        the expected value; no band before a learning period's worth of points."""
        values, _ = as_batch(values, timestamps)
        enough = np.sum(~np.isnan(values), axis=1) >= self.min_learn_points
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # an all-gap series: NaN band
            lower, upper = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
        lower, upper = np.where(enough, lower, np.nan), np.where(enough, upper, np.nan)
        return FlatBaseline((lower + upper) / 2, lower, upper)

    def reference(self, values: np.ndarray) -> NoveltyReference:
        """The live form (the baseliner's): the levels each series of ``values`` has made familiar,
        one set of bins per resolution; :meth:`NoveltyReference.score` then says how new a
        current value is. Fewer than ``min_learn_points`` points: no reference.

        It differs from :meth:`causal` where a live history differs from a NAB file: the unit is
        the reference's 5-95 % range (one outlier in six hours must not widen every bin), a level
        is familiar once visited :data:`FAMILIAR_VISITS` times (one stray point, a restart's
        zero, does not make an incident's level normal), and there is no rest period and no
        rhythm channel (the alert's ``for`` does the resting; six hours hold no yesterday)."""
        values = np.atleast_2d(np.asarray(values, dtype=float))
        return NoveltyReference(self.resolutions, [self._visited(row) for row in values])

    def _visited(self, series: np.ndarray) -> tuple[float, float, list[tuple[float, np.ndarray]]] | None:
        seen = series[np.isfinite(series)]
        if seen.size < self.min_learn_points:
            return None
        low, high = (float(q) for q in np.quantile(seen, REFERENCE_QUANTILES))
        visited = []
        for levels in self.resolutions:
            width = _width(low, high, levels)
            bins, counts = np.unique(np.floor((seen - low) / width + 0.5), return_counts=True)
            visited.append((width, bins[counts >= FAMILIAR_VISITS]))
        return low, high, visited

    def _daily_change(self, series: np.ndarray, period: int | None, learn: int) -> np.ndarray | None:
        """The change since the same time yesterday, for a series whose learning period shows a
        daily rhythm; None otherwise (no day inside the learning period, or no rhythm)."""
        # At least a quarter of a day seen twice: fewer pairs cannot tell a rhythm from chance.
        if period is None or learn - period < max(self.min_learn_points, period // 4):
            return None
        today, yesterday = series[period:learn], series[:learn - period]
        both = np.isfinite(today) & np.isfinite(yesterday)
        if both.sum() < self.min_learn_points or np.std(today[both]) == 0 or np.std(yesterday[both]) == 0:
            return None
        if np.corrcoef(today[both], yesterday[both])[0, 1] < self.rhythm_correlation:
            return None
        change = np.full(series.shape[0], np.nan)
        change[period:] = series[period:] - series[:-period]
        return change

    def _novelty(self, series: np.ndarray, learn: int, unit_from: int = 0) -> np.ndarray:
        head = series[unit_from:learn]
        head = head[~np.isnan(head)]
        novelty = np.zeros(series.shape[0])
        if head.size == 0:
            return novelty
        low, high = float(head.min()), float(head.max())
        valid = np.flatnonzero(~np.isnan(series))
        for levels in self.resolutions:
            width = _width(low, high, levels)
            bins = np.floor((series[valid] - low) / width + 0.5)
            _, first = np.unique(bins, return_index=True)
            novelty[valid[first]] += 1.0
        novelty[:learn] = 0.0           # learning: every bin is new then, none of it is news
        return novelty / len(self.resolutions)

    def _rested(self, novelty: np.ndarray, series: np.ndarray, learn: int) -> np.ndarray:
        """Silence the points that follow an alarm for the rest period, unless one is stronger:
        news at more resolutions than the alarm was, or at as many and at least
        :data:`REALARM_FACTOR` times as far beyond everything seen before (a spike on top of the
        incident, not the next step of the same climb): it alarms anew."""
        rest = int(self.rest_share * learn)
        alarms = np.flatnonzero(novelty >= self.alarm)
        if rest == 0 or alarms.size == 0:
            return novelty
        beyond = _beyond_seen(series, learn)
        out = novelty.copy()
        until, strength, reach = -1, 0.0, 0.0
        for index in alarms:             # alarms are rare: a loop over them, not over points
            if index <= until:
                stronger = novelty[index] > strength or (
                    novelty[index] >= strength and beyond[index] > 0
                    and beyond[index] >= REALARM_FACTOR * reach)
                if not stronger:
                    continue
            out[index] = novelty[index]          # a rest already begun may have silenced it
            out[index + 1:index + 1 + rest] = 0.0
            until, strength, reach = index + rest, novelty[index], beyond[index]
        return out


def _daily_period(timestamps: np.ndarray) -> int | None:
    """Points per day at the series' step (None for a step of a day or more)."""
    if timestamps.shape[0] < 2:
        return None
    period = int(round(86400.0 / float(np.median(np.diff(timestamps)))))
    return period if period >= 2 else None


def _width(low: float, high: float, levels: int) -> float:
    # A flat learning period still needs a unit: any departure from a line is news.
    return (high - low) / (levels - 1) if high > low else max(abs(low), 1.0) * 1e-9


class NoveltyReference:
    """Bins visited by each series of a reference history (see :meth:`LevelNovelty.reference`):
    per series ``(low, high, [(bin width, visited bins) per resolution])``, or None."""

    def __init__(self, resolutions: tuple[int, ...],
                 series: list[tuple[float, float, list[tuple[float, np.ndarray]]] | None]) -> None:
        self.resolutions = resolutions
        self.series = series

    def usable(self) -> np.ndarray:
        return np.array([entry is not None for entry in self.series])

    def score(self, current: np.ndarray) -> np.ndarray:
        """Per series: the share of resolutions at which ``current``'s bin was never visited
        (0 for a gap or a series without a reference).

        >>> ref = LevelNovelty().reference(np.arange(100.0)[None, :])
        >>> ref.score(np.array([50.0])).tolist(), ref.score(np.array([500.0])).tolist()
        ([0.0], [1.0])
        """
        out = np.zeros(len(self.series))
        for index, (entry, value) in enumerate(zip(self.series, np.atleast_1d(current))):
            if entry is None or not np.isfinite(value):
                continue
            low, _, visited = entry
            new = sum(1 for width, bins in visited
                      if not _contains(bins, np.floor((value - low) / width + 0.5)))
            out[index] = new / len(visited)
        return out


def _contains(sorted_bins: np.ndarray, value: float) -> bool:
    at = int(np.searchsorted(sorted_bins, value))
    return at < sorted_bins.size and sorted_bins[at] == value


def _beyond_seen(series: np.ndarray, learn: int) -> np.ndarray:
    """Per point: how far it lies outside the range of every point before it, in units of the
    learning period's range (0 inside; gaps count as inside)."""
    head = series[:learn]
    head = head[~np.isnan(head)]
    span = float(head.max() - head.min()) if head.size else 0.0
    span = span or max(abs(float(head[0])) if head.size else 0.0, 1.0)
    filled = np.where(np.isnan(series), -np.inf, series)
    high = np.concatenate([[np.inf], np.maximum.accumulate(filled)[:-1]])
    filled = np.where(np.isnan(series), np.inf, series)
    low = np.concatenate([[-np.inf], np.minimum.accumulate(filled)[:-1]])
    with np.errstate(invalid="ignore"):
        outside = np.maximum(series - high, low - series)
    return np.where(np.isfinite(outside) & (outside > 0), outside / span, 0.0)
