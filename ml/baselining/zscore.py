"""Rolling mean +/- k standard deviations over a trailing window: the z-score baseline.

What it models: a series that wanders slowly around a level, with roughly symmetric noise
whose spread changes slowly. The band at a point is the mean of the last ``window_s`` of
history plus and minus ``k`` of its sample standard deviations.

When it wins: stationary request rates and volumes; right after a level shift it adapts within
one window without any notion of "normal days"; it is the cheapest algorithm (two pandas
rolling passes) and the band an operator expects to see.

When it fails:
- Spikes: one large spike inflates the standard deviation for a whole window, so the points
  after it (a second spike, a small outage) hide inside a band that is suddenly too wide.
- Level shifts: the first points after the shift are flagged (right), then the window straddles
  both levels and the band stays wide for up to one window.
- Seasonality: no notion of the daily shape; a steep ramp (morning traffic) lags behind the
  mean and widens the band, so a quiet night never looks as unusual as it is.
- Skewed latency distributions: the band is symmetric, so the long upper tail of latencies
  crosses it far more often than a Gaussian would, while the lower edge can sit below 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from obslab.ml.baselining._common import (
    FlatBaseline,
    as_batch,
    finish,
    median_step,
    points,
    require_positive,
    shift_right,
)
from obslab.ml.protocol import Bands


@dataclass(frozen=True)
class ZScore:
    """Trailing mean +/- ``k`` sigma.

    >>> import numpy as np
    >>> ts = np.arange(600) * 15.0
    >>> noise = np.random.default_rng(1).normal(100, 5, size=(1, 600))
    >>> bands = ZScore().causal(noise, ts)
    >>> bool(np.isnan(bands.expected[0, 0]) and 90 < bands.expected[0, -1] < 110)
    True
    """

    name: ClassVar[str] = "zscore"
    summary: ClassVar[str] = ("trailing mean +/- k sigma over the last window: level-following, "
                              "cheap; best on stationary symmetric noise, fooled by seasonality")

    k: float = 3.0
    window_s: float = 3600.0
    min_window_points: int = 48     # 4 h of 5-minute NAB data
    min_points: int = 12            # valid points needed in the window for a band

    def __post_init__(self) -> None:
        require_positive(self, k=self.k, window_s=self.window_s,
                         min_window_points=self.min_window_points, min_points=self.min_points)

    def window(self, timestamps: np.ndarray) -> int:
        return points(self.window_s, median_step(timestamps), self.min_window_points)

    def causal(self, values: np.ndarray, timestamps: np.ndarray) -> Bands:
        values, timestamps = as_batch(values, timestamps)
        mean, std = self._trailing(values, self.window(timestamps))
        # The statistic ending at column t-1 is the band of column t: no look-ahead.
        expected = shift_right(mean)
        spread = self.k * shift_right(std)
        return finish(values, expected, expected - spread, expected + spread)

    def fit(self, values: np.ndarray, timestamps: np.ndarray) -> FlatBaseline:
        values, timestamps = as_batch(values, timestamps)
        window = self.window(timestamps)
        # The same rolling code on the last window only, so that fit-then-forecast and the
        # streaming detector agree to the last bit (pandas pins constant windows exactly).
        mean, std = self._trailing(values[:, -window:], window)
        mean, std = _last_column(mean), _last_column(std)
        return FlatBaseline(mean, mean - self.k * std, mean + self.k * std)

    def _trailing(self, values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
        # Imported here: pandas costs about a second to import, and importing the package (for
        # its names, or bench.py for a CLI) should not pay for it.
        import pandas as pd

        # values.T is (n_points, n_series): pandas rolls each series down its own column.
        rolling = pd.DataFrame(values.T).rolling(window, min_periods=min(self.min_points, window))
        return rolling.mean().to_numpy().T, rolling.std().to_numpy().T



def _last_column(array: np.ndarray) -> np.ndarray:
    if array.shape[1] == 0:
        return np.full(array.shape[0], np.nan)
    return array[:, -1]
