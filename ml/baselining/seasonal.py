"""Seasonal robust baseline: median +/- k robust sigmas of past values in the same hour slot.

What it models: traffic that repeats by time of day (and by day of week once two weeks of
history exist). The expected value at 14:xx is the median of the values seen at 14:xx on the
last ``daily_cycles`` days (hour-of-week: the same hour on the last ``weekly_cycles`` weeks);
the band is ``k`` robust sigmas around it, with sigma = max(1.4826 x MAD, 1.2533 x mean
absolute deviation) so that mostly-zero count series do not get a zero-width band. When a slot
has less than ``min_slot_fraction`` of one slot's worth of past values (the first day of a
series, a slot lost to a gap), the band falls back to the same robust statistics over the
trailing ``fallback_window_s`` of history, refreshed every ``refresh_s``.

When it wins: strongly seasonal series whose normal range differs by hour - a night that is
quiet, a batch job at 02:00, a Monday-morning peak - where a trailing window either lags or
widens. Median and MAD ignore past spikes and incidents inside the slot's history, so one bad
day does not poison tomorrow's band.

When it fails:
- Level shifts and growth: yesterday's 14:00 knows nothing of today's new level, so a
  permanent shift is flagged for up to ``daily_cycles`` days until the slot median moves.
- Short history: with less than a day the slots are empty and it is only the trailing robust
  fallback (still spike-proof, still no seasonality).
- Shape inside the hour: the slot pools a whole hour, so a steep ramp within it widens the band.
- Spikes are its strength, but a spike that recurs daily at the same hour becomes "normal".
- Skewed latency: the band is symmetric around the median, like z-score, though robust sigma
  keeps the tail from inflating it.

Slots are UTC hour-of-day / hour-of-week, taken from the timestamps (a gap never shifts them).
The streaming detector computes each hour's band from the earlier cycles only, so the slot
statistics of an hour are fixed for the whole hour; fit-then-forecast uses the same cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from obslab.ml.baselining._common import (
    as_batch,
    as_future,
    clean_band,
    finish,
    median_step,
    points,
    refreshed_trailing,
    require_positive,
    robust_centre_and_sigma,
)
from obslab.ml.protocol import Bands

DAY_S = 86400.0
WEEK_S = 7 * DAY_S


@dataclass(frozen=True)
class SeasonalMAD:
    """Hour-slot median +/- k robust sigmas, trailing robust window when a slot is empty.

    >>> import numpy as np
    >>> ts = np.arange(3 * 288) * 300.0                 # three days at 5-minute steps
    >>> busy_afternoon = 100 + 50 * (np.floor(ts / 3600) % 24 == 14)
    >>> noise = np.random.default_rng(3).normal(0, 2, size=(1, ts.size))
    >>> baseline = SeasonalMAD().fit(busy_afternoon + noise, ts)
    >>> midnight = ts[-1] + 300.0
    >>> expected, lower, upper = baseline.bands(midnight + np.array([3 * 3600.0, 14 * 3600.0]))
    >>> bool(expected[0, 1] > expected[0, 0] + 40)      # 14:00 tomorrow vs 03:00
    True
    """

    name: ClassVar[str] = "seasonalMad"
    summary: ClassVar[str] = ("median +/- k robust sigma of past values in the same hour-of-day "
                              "(hour-of-week after 2 weeks) slot: seasonal traffic, spike-proof")

    k: float = 3.0
    slot_s: float = 3600.0
    daily_cycles: int = 7           # past days pooled into an hour-of-day slot
    weekly_cycles: int = 4          # past weeks pooled into an hour-of-week slot
    weekly_after_s: float = 2 * WEEK_S
    min_slot_fraction: float = 0.5  # of one slot's points, pooled over the cycles
    min_slot_points: int = 12       # one full hour of 5-minute NAB data
    fallback_window_s: float = 3600.0
    min_fallback_window_points: int = 48
    refresh_s: float = 300.0
    min_points: int = 12            # valid points in the fallback window for a band

    def __post_init__(self) -> None:
        require_positive(self, k=self.k, slot_s=self.slot_s, daily_cycles=self.daily_cycles,
                         weekly_cycles=self.weekly_cycles, weekly_after_s=self.weekly_after_s,
                         min_slot_fraction=self.min_slot_fraction,
                         min_slot_points=self.min_slot_points,
                         fallback_window_s=self.fallback_window_s,
                         min_fallback_window_points=self.min_fallback_window_points,
                         refresh_s=self.refresh_s, min_points=self.min_points)
        if DAY_S % self.slot_s:
            raise ValueError(f"SeasonalMAD: slot_s must divide a day (86400 s), got {self.slot_s}")

    def causal(self, values: np.ndarray, timestamps: np.ndarray) -> Bands:
        values, timestamps = as_batch(values, timestamps)
        step = median_step(timestamps)
        hours = _Hours(timestamps, self.slot_s)
        min_slot = self._min_slot_points(step)
        slot_centre = np.full(values.shape, np.nan)
        slot_sigma = np.full(values.shape, np.nan)
        for index, block in enumerate(hours.ids):
            start, end = hours.starts[index], hours.ends[index]
            past = hours.indices(self._past_blocks(block, self._covered(timestamps, start, step)))
            if not past:
                continue
            window = np.concatenate([values[:, hours.starts[p]:hours.ends[p]] for p in past],
                                    axis=1)
            centre, sigma = robust_centre_and_sigma(window, min_slot)
            slot_centre[:, start:end] = centre[:, None]
            slot_sigma[:, start:end] = sigma[:, None]
        fallback_centre, fallback_sigma = refreshed_trailing(
            values, self._fallback_window(step), points(self.refresh_s, step, 1),
            lambda window: robust_centre_and_sigma(window, self.min_points))
        return finish(values, *self._band(slot_centre, slot_sigma, fallback_centre, fallback_sigma))

    def fit(self, values: np.ndarray, timestamps: np.ndarray) -> SeasonalBaseline:
        values, timestamps = as_batch(values, timestamps)
        n_series, n_points = values.shape
        step = median_step(timestamps)
        period = self._period(self._covered(timestamps, n_points, step))
        centres = np.full((period, n_series), np.nan)
        sigmas = np.full((period, n_series), np.nan)
        if n_points:
            hours = _Hours(timestamps, self.slot_s)
            current = int(hours.ids[-1])
            min_slot = self._min_slot_points(step)
            for slot in range(period):
                # The latest hour of this slot before the current (still open) hour, then the
                # cycles before it: the hours the streaming detector would pool for the next
                # occurrence of this slot.
                latest = current - 1 - (current - 1 - slot) % period
                past = hours.indices([latest - j * period for j in range(self._cycles(period))])
                if not past:
                    continue
                window = np.concatenate([values[:, hours.starts[p]:hours.ends[p]] for p in past],
                                        axis=1)
                centres[slot], sigmas[slot] = robust_centre_and_sigma(window, min_slot)
        window = self._fallback_window(step)
        fallback = robust_centre_and_sigma(values[:, -window:], self.min_points)
        return SeasonalBaseline(self, centres, sigmas, *fallback)

    def _band(self, slot_centre: np.ndarray, slot_sigma: np.ndarray, fallback_centre: np.ndarray,
              fallback_sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Filled in place: these are (n_series, n_points) arrays owned by the caller's method.
        use_fallback = ~(np.isfinite(slot_centre) & np.isfinite(slot_sigma))
        np.copyto(slot_centre, fallback_centre, where=use_fallback)
        np.copyto(slot_sigma, fallback_sigma, where=use_fallback)
        slot_sigma *= self.k
        return clean_band(slot_centre, slot_centre - slot_sigma, slot_centre + slot_sigma)

    def _period(self, covered_s: float) -> int:
        """Slots per season: hour-of-week once the history covers ``weekly_after_s``."""
        return int(round((WEEK_S if covered_s >= self.weekly_after_s else DAY_S) / self.slot_s))

    def _cycles(self, period: int) -> int:
        weekly = period * self.slot_s >= WEEK_S
        return self.weekly_cycles if weekly else self.daily_cycles

    def _past_blocks(self, block: int, covered_s: float) -> list[int]:
        period = self._period(covered_s)
        return [block - j * period for j in range(1, self._cycles(period) + 1)]

    @staticmethod
    def _covered(timestamps: np.ndarray, end: int, step: float) -> float:
        """Seconds of history in columns ``< end``."""
        return float(timestamps[end - 1] - timestamps[0] + step) if end > 0 else 0.0

    def _min_slot_points(self, step: float) -> int:
        return points(self.min_slot_fraction * self.slot_s, step, self.min_slot_points)

    def _fallback_window(self, step: float) -> int:
        return points(self.fallback_window_s, step, self.min_fallback_window_points)


class SeasonalBaseline:
    """Per-slot medians and sigmas of the history, with the trailing fallback for empty slots."""

    def __init__(self, algorithm: SeasonalMAD, centres: np.ndarray, sigmas: np.ndarray,
                 fallback_centre: np.ndarray, fallback_sigma: np.ndarray) -> None:
        self._algorithm = algorithm
        self._centres, self._sigmas = centres, sigmas      # (period, n_series)
        self._fallback_centre, self._fallback_sigma = fallback_centre, fallback_sigma

    def bands(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        timestamps = as_future(timestamps)
        period = self._centres.shape[0]
        slots = (np.floor(timestamps / self._algorithm.slot_s).astype(np.int64)) % period
        # Fancy indexing copies, so _band may fill these in place.
        slot_centre = np.ascontiguousarray(self._centres[slots].T)
        slot_sigma = np.ascontiguousarray(self._sigmas[slots].T)
        return self._algorithm._band(slot_centre, slot_sigma, self._fallback_centre[:, None],
                                     self._fallback_sigma[:, None])


class _Hours:
    """The columns of each slot-long block of time ("hour"), keyed by its absolute block id."""

    def __init__(self, timestamps: np.ndarray, slot_s: float) -> None:
        blocks = np.floor(timestamps / slot_s).astype(np.int64)
        self.starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]]) if blocks.size else \
            np.zeros(0, dtype=np.intp)
        self.ends = np.r_[self.starts[1:], blocks.size].astype(np.intp)
        self.ids = blocks[self.starts]
        self._position = {int(block): index for index, block in enumerate(self.ids)}

    def indices(self, blocks: list[int]) -> list[int]:
        """Positions of those blocks that hold at least one column."""
        return [self._position[b] for b in blocks if b in self._position]
