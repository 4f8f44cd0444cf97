"""Robust damped Holt-Winters: a level, a fading trend and (after two days) a daily season.

What it models: a series that moves smoothly - a level that follows the data with a half-life
of ``level_half_life_s``, a trend that is extrapolated but fades (Gardner's damped trend, so
that a forecast 5 minutes ahead follows a ramp and one hours ahead does not run away) and,
once two full days of history exist, an additive daily profile. The band is ``k`` times the
exponentially weighted standard deviation of the one-step forecast errors, widened with the
forecast horizon as for simple exponential smoothing (``sqrt(1 + (h-1) alpha^2)``).

When it wins: series that drift, ramp or trend (traffic growing through the morning, a queue
filling) and short histories: it needs a dozen points, not a day. Its band tracks the level
within minutes where a window-based median lags by half a window. With two days behind it, a
daily pattern sharper than the level can follow (a batch job at 02:00) becomes expected.

When it fails:
- Spikes: an exponentially smoothed level is pulled by outliers. Residuals are therefore
  clipped at ``clip`` sigmas before they update the level, trend and spread (the robust
  Holt-Winters of Gelper, Fried & Croux, 2010), so one spike moves nothing much - but a burst
  of many spikes in a row is eventually learnt.
- Level shifts: clipping would make a permanent shift take very long to learn, so after
  ``shift_after_s`` of consecutive points beyond the band on the same side the level is re-seeded
  at the new value and the spread is re-learnt: flagged briefly, then adopted.
- Seasonality with under two days of history: only the level follows the daily shape (lagging
  slightly on steep ramps), which widens the spread.
- Skewed latency distributions: the band is symmetric around the forecast; the long upper tail
  is flagged more often than a Gaussian tail would be.

The recursion is a loop over time with vector operations across all series (a day at 15 s is
5,760 steps of 1,000-wide arithmetic); the streaming detector records the forecast before each
update, ``fit`` keeps the final state and forecasts from it.
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
    require_positive,
)
from obslab.ml.protocol import Bands


_SPREAD_PRIOR_POINTS = 3


def _weight(half_life_points: float) -> float:
    """Per-step weight of the newest point for an exponential average with that half-life."""
    return 1.0 - 0.5 ** (1.0 / half_life_points)


@dataclass(frozen=True)
class HoltWinters:
    """Damped-trend Holt's smoothing, robust to spikes, with an additive daily season.

    >>> import numpy as np
    >>> ts = np.arange(400) * 15.0
    >>> ramp = (10 + 0.05 * np.arange(400) + np.random.default_rng(4).normal(0, 0.5, 400))[None]
    >>> baseline = HoltWinters().fit(ramp, ts)
    >>> expected, lower, upper = baseline.bands(ts[-1] + np.array([15.0, 60.0]))
    >>> bool(28 < expected[0, 0] < 32 and expected[0, 1] > expected[0, 0])   # follows the ramp
    True
    """

    name: ClassVar[str] = "holtWinters"
    summary: ClassVar[str] = ("robust damped-trend exponential smoothing with a daily season "
                              "after 2 days: follows ramps and short histories, adopts shifts")

    k: float = 3.0
    level_half_life_s: float = 600.0
    min_level_half_life_points: float = 3.0
    # The trend learns as fast as the level and fades far slower than it learns: with damping
    # faster than learning, a steady ramp would be followed with a lag of dozens of steps.
    trend_half_life_s: float = 600.0
    min_trend_half_life_points: float = 3.0
    damping_half_life_s: float = 7200.0      # an extrapolated trend fades by half in this time
    min_damping_half_life_points: float = 24.0
    spread_half_life_s: float = 3600.0
    min_spread_half_life_points: float = 24.0
    season_s: float = 86400.0
    season_weight: float = 0.1               # per visit of a slot, i.e. once per season
    season_smoothing_s: float = 1800.0       # neighbouring slots averaged when the season starts
    clip: float = 3.0                        # residuals beyond clip sigmas are cut for updates
    shift_after_s: float = 120.0
    min_shift_points: int = 3
    warmup_points: int = 12

    def __post_init__(self) -> None:
        require_positive(
            self, k=self.k, level_half_life_s=self.level_half_life_s,
            min_level_half_life_points=self.min_level_half_life_points,
            trend_half_life_s=self.trend_half_life_s,
            min_trend_half_life_points=self.min_trend_half_life_points,
            damping_half_life_s=self.damping_half_life_s,
            min_damping_half_life_points=self.min_damping_half_life_points,
            spread_half_life_s=self.spread_half_life_s,
            min_spread_half_life_points=self.min_spread_half_life_points,
            season_s=self.season_s, season_weight=self.season_weight,
            season_smoothing_s=self.season_smoothing_s, clip=self.clip,
            shift_after_s=self.shift_after_s, min_shift_points=self.min_shift_points,
            warmup_points=self.warmup_points)
        if self.season_weight >= 1:
            raise ValueError(f"HoltWinters: season_weight must be below 1, "
                             f"got {self.season_weight}")

    def causal(self, values: np.ndarray, timestamps: np.ndarray) -> Bands:
        values, timestamps = as_batch(values, timestamps)
        smoother = _Smoother(self, timestamps, values.shape[0])
        expected, spread = smoother.run(values, record=True)
        return finish(values, expected, expected - spread, expected + spread)

    def fit(self, values: np.ndarray, timestamps: np.ndarray) -> HoltWintersBaseline:
        values, timestamps = as_batch(values, timestamps)
        smoother = _Smoother(self, timestamps, values.shape[0])
        smoother.run(values, record=False)
        return HoltWintersBaseline(smoother)


class HoltWintersBaseline:
    """The smoother's final state, forecasting ``h`` steps past the end of the history."""

    def __init__(self, smoother: _Smoother) -> None:
        self._smoother = smoother

    def bands(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        expected, spread = self._smoother.forecast(as_future(timestamps))
        return clean_band(expected, expected - spread, expected + spread)


class _Smoother:
    """The recursion's parameters in points and its per-series state (vectors over series)."""

    def __init__(self, algorithm: HoltWinters, timestamps: np.ndarray, n_series: int) -> None:
        a = algorithm
        self.k, self.clip = a.k, a.clip
        self.timestamps = timestamps
        self.step = step = median_step(timestamps)
        self.alpha = _weight(max(a.level_half_life_s / step, a.min_level_half_life_points))
        self.beta = _weight(max(a.trend_half_life_s / step, a.min_trend_half_life_points))
        self.phi = 0.5 ** (1.0 / max(a.damping_half_life_s / step, a.min_damping_half_life_points))
        self.spread_weight = _weight(max(a.spread_half_life_s / step,
                                         a.min_spread_half_life_points))
        self.shift_points = points(a.shift_after_s, step, a.min_shift_points)
        self.warmup = a.warmup_points
        self.season_s, self.season_weight = a.season_s, a.season_weight
        self.season_slots = max(1, int(round(a.season_s / step)))
        self.season_smoothing = points(a.season_smoothing_s, step, 1)

        self.level = np.full(n_series, np.nan)
        self.trend = np.zeros(n_series)
        self.variance = np.zeros(n_series)
        # Counts kept as floats: they enter the arithmetic every step without a conversion.
        self.observed = np.zeros(n_series)      # valid points seen
        self.residuals = np.zeros(n_series)     # one-step errors seen
        self.since_seed = np.zeros(n_series)    # points in the current level
        self.since_spread = np.zeros(n_series)  # errors in the current spread estimate
        self.run_length = np.zeros(n_series)    # signed run of same-side points beyond the band
        self.season: np.ndarray | None = None                  # (season_slots, n_series)
        self.last_timestamp = np.nan

    def slot(self, timestamps: np.ndarray) -> np.ndarray:
        # Rounded, not floored: scrape timestamps jitter by milliseconds around the grid.
        phase = np.mod(timestamps, self.season_s)
        return np.floor(phase / self.step + 0.5).astype(np.int64) % self.season_slots

    def run(self, values: np.ndarray, record: bool) -> tuple[np.ndarray, np.ndarray]:
        n_series, n_points = values.shape
        rows = np.ascontiguousarray(values.T)     # a time step is then one contiguous row
        valid_rows = ~np.isnan(rows)
        slots = self.slot(self.timestamps)
        expected = np.empty((n_points, n_series)) if record else None
        spread = np.empty((n_points, n_series)) if record else None
        ready_rows = np.empty((n_points, n_series), dtype=bool) if record else None
        k, clip, phi, beta, warmup = self.k, self.clip, self.phi, self.beta, self.warmup
        # Per-series weights 1/(n+1) matter only until every series has seen enough points;
        # after that the scalar weights keep the loop short (it runs once per time step).
        level_settled = 1.0 / self.alpha - 1.0
        spread_settled = 1.0 / self.spread_weight - 1.0
        for t in range(n_points if n_series else 0):   # no series: nothing to smooth
            if self.season is None and self._covers_two_seasons(t):
                self._start_season(rows[:t], slots[:t])
            seasonal = self.season[slots[t]] if self.season is not None else 0.0
            base = self.level + phi * self.trend
            forecast = base + seasonal
            sigma = np.sqrt(self.variance)
            ready = self.residuals >= warmup
            if record:
                expected[t] = forecast
                spread[t] = sigma
                ready_rows[t] = ready

            y, valid = rows[t], valid_rows[t]
            seen = self.observed > 0
            update = valid & seen
            error = y - forecast                       # NaN for a gap or an unseen series
            # Clipped once the spread is learnt: a spike then moves the state by clip sigmas.
            bound = clip * sigma
            if self.since_spread.min() >= warmup:
                step_error = np.clip(error, -bound, bound)
            else:
                step_error = np.where(self.since_spread >= warmup,
                                      np.clip(error, -bound, bound), error)
            step_error[~update] = 0.0                  # a gap advances the state on its forecast

            if self.since_spread.min() >= spread_settled:
                spread_weight = self.spread_weight
            else:
                spread_weight = np.maximum(self.spread_weight, 1.0 / (self.since_spread + 1.0))
            self.variance += update * spread_weight * (step_error * step_error - self.variance)
            self.residuals += update
            self.since_spread += update

            # Signed run of consecutive same-side points beyond the band (a level shift).
            side = np.where((np.abs(error) > k * sigma) & ready, np.sign(error), 0.0)
            self.run_length = np.where(side * self.run_length > 0, self.run_length + side, side)

            # Error-correction form of damped Holt-Winters; during warm-up the weight 1/n makes
            # the level a plain running mean of the points seen so far.
            if self.since_seed.min() >= level_settled:
                alpha = self.alpha
            else:
                alpha = np.maximum(self.alpha, 1.0 / (self.since_seed + 1.0))
            self.level = base + alpha * step_error
            self.trend = phi * self.trend + (alpha * beta) * step_error
            if self.season is not None:
                self.season[slots[t]] += self.season_weight * (1.0 - alpha) * step_error
            self.since_seed += update

            # A new series, or one that has moved to a new level: start the level afresh there.
            first = valid & ~seen
            reseed = np.abs(self.run_length) >= self.shift_points
            if first.any() or reseed.any():
                seed = first | reseed
                self.level[seed] = (y - seasonal)[seed]
                self.trend[seed] = 0.0
                self.since_seed[seed] = 1.0
                # After a shift the old spread is kept as a prior worth a few points only.
                self.since_spread[reseed] = np.minimum(self.since_spread[reseed],
                                                       _SPREAD_PRIOR_POINTS)
                self.run_length[reseed] = 0.0
            self.observed += valid
        if n_points:
            self.last_timestamp = self.timestamps[-1]
            if self.season is None and self._covers_two_seasons(n_points):
                self._start_season(rows, slots)
        if not record:
            return np.empty((n_series, 0)), np.empty((n_series, 0))
        expected[~ready_rows] = np.nan
        spread[~ready_rows] = np.nan
        spread *= k
        return expected.T, spread.T

    def forecast(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        horizon = np.maximum(1.0, np.round((timestamps - self.last_timestamp) / self.step))
        horizon = np.where(np.isfinite(horizon), horizon, 1.0)
        if self.phi < 1.0:
            damped = self.phi * (1.0 - self.phi ** horizon) / (1.0 - self.phi)
        else:
            damped = horizon
        expected = self.level[:, None] + damped[None, :] * self.trend[:, None]
        if self.season is not None:
            expected = expected + self.season[self.slot(timestamps)].T
        widening = np.sqrt(1.0 + (horizon - 1.0) * self.alpha ** 2)
        spread = self.k * np.sqrt(self.variance)[:, None] * widening[None, :]
        ready = (self.residuals >= self.warmup)[:, None]
        return np.where(ready, expected, np.nan), np.where(ready, spread, np.nan)

    def _covers_two_seasons(self, end: int) -> bool:
        if end == 0:
            return False
        covered = self.timestamps[end - 1] - self.timestamps[0] + self.step
        return covered >= 2 * self.season_s

    def _start_season(self, rows: np.ndarray, slots: np.ndarray) -> None:
        """Initial daily profile from the history so far: per slot, the mean deviation from its
        day's mean, averaged over neighbouring slots (two days give two noisy points per slot)."""
        n_slots, n_series = self.season_slots, rows.shape[1]
        elapsed = self.timestamps[:rows.shape[0]] - self.timestamps[0]
        day = (elapsed // self.season_s).astype(np.int64)
        valid = ~np.isnan(rows)
        filled = np.where(valid, rows, 0.0)
        n_days = int(day[-1]) + 1
        day_sum = np.zeros((n_days, n_series))
        day_count = np.zeros((n_days, n_series))
        np.add.at(day_sum, day, filled)
        np.add.at(day_count, day, valid)
        with np.errstate(invalid="ignore", divide="ignore"):
            day_mean = day_sum / day_count
        deviation = np.where(valid, rows - day_mean[day], 0.0)
        deviation = np.where(np.isfinite(deviation), deviation, 0.0)
        slot_sum = np.zeros((n_slots, n_series))
        slot_count = np.zeros((n_slots, n_series))
        np.add.at(slot_sum, slots, deviation)
        np.add.at(slot_count, slots, valid)
        slot_sum = _circular_moving_sum(slot_sum, self.season_smoothing)
        slot_count = _circular_moving_sum(slot_count, self.season_smoothing)
        with np.errstate(invalid="ignore", divide="ignore"):
            profile = np.where(slot_count > 0, slot_sum / slot_count, 0.0)
        profile -= profile.mean(axis=0)
        self.season = profile
        # The level had been following the seasonal shape; from now on it is the deseasonalised
        # level (the profile of the last step taken out).
        self.level = self.level - profile[slots[-1]]


def _circular_moving_sum(array: np.ndarray, width: int) -> np.ndarray:
    """Centred moving sum of ``width`` rows, wrapping around the season's end."""
    n = array.shape[0]
    width = min(width, n)
    before = width // 2
    after = width - before - 1
    padded = np.concatenate([array[n - before:] if before else array[:0], array,
                             array[:after] if after else array[:0]])
    cumulative = np.concatenate([np.zeros((1, array.shape[1])), np.cumsum(padded, axis=0)])
    return cumulative[width:width + n] - cumulative[:n]
