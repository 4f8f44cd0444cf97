"""Shared plumbing of the baselining algorithms: input checks, windows in seconds, band hygiene.

Every algorithm states its windows in seconds (what an operator thinks in) and converts them
with the series' median step, with a floor in points so that 5-minute NAB data still gets a
window with enough points for its statistics. Every band leaves through :func:`finish`, which
enforces the protocol's promises in one place: a band is either fully defined or fully ``NaN``,
``lower <= expected <= upper``, and the score comes from the protocol's ``deviation_score``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from obslab.ml.protocol import Bands, deviation_score

# Consistency factors that turn a spread measure into a Gaussian sigma, so that ``k`` means the
# same number of sigmas in every algorithm.
MAD_TO_SIGMA = 1.4826
MEAN_ABS_TO_SIGMA = 1.2533


def as_batch(values: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The batch as floats, +-Inf turned into gaps (in a copy); ValueError if it is malformed.

    The caller's array is never modified: algorithms only read ``values``.
    """
    values = np.asarray(values, dtype=float)
    timestamps = np.asarray(timestamps, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (n_series, n_points), got shape {values.shape}; "
                         "for one series pass values[None, :]")
    if timestamps.ndim != 1 or timestamps.shape[0] != values.shape[1]:
        raise ValueError(f"timestamps must be 1-D with one entry per column ({values.shape[1]}), "
                         f"got shape {timestamps.shape}")
    if not np.all(np.isfinite(timestamps)) or np.any(np.diff(timestamps) <= 0):
        raise ValueError("timestamps must be finite and strictly increasing (Unix seconds)")
    # Prometheus can answer +Inf (a quantile past the last bucket): no statistic survives it.
    infinite = np.isinf(values)
    if infinite.any():
        values = np.where(infinite, np.nan, values)   # a copy: callers' arrays stay as they are
    return values, timestamps


def as_future(timestamps: np.ndarray) -> np.ndarray:
    timestamps = np.asarray(timestamps, dtype=float)
    if timestamps.ndim != 1:
        raise ValueError(f"timestamps must be 1-D, got shape {timestamps.shape}")
    return timestamps


def median_step(timestamps: np.ndarray) -> float:
    """The scrape step in seconds; 1.0 when fewer than two points leave it undefined."""
    if timestamps.shape[0] < 2:
        return 1.0
    return float(np.median(np.diff(timestamps)))


def points(seconds: float, step: float, minimum: int) -> int:
    """A window of ``seconds`` in points at ``step``, never fewer than ``minimum``."""
    return max(int(minimum), int(round(seconds / step)))


def require_positive(owner: object, **parameters: float) -> None:
    for name, value in parameters.items():
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ValueError(f"{type(owner).__name__}: {name} must be a positive number, "
                             f"got {value!r}")


def clean_band(expected: np.ndarray, lower: np.ndarray,
               upper: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All-or-nothing NaN and ``lower <= expected <= upper`` (float noise can break either)."""
    defined = np.isfinite(expected)
    defined &= np.isfinite(lower)
    defined &= np.isfinite(upper)
    expected = np.where(defined, expected, np.nan)
    # minimum/maximum propagate the NaN just put into ``expected``: one pass each.
    return expected, np.minimum(lower, expected), np.maximum(upper, expected)


def finish(values: np.ndarray, expected: np.ndarray, lower: np.ndarray,
           upper: np.ndarray) -> Bands:
    expected, lower, upper = clean_band(expected, lower, upper)
    return Bands(expected, lower, upper, deviation_score(values, expected, lower, upper))


def sorted_quantiles(window: np.ndarray, quantiles: tuple[float, ...],
                     min_points: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Linear-interpolated quantiles along the last axis of a window that may hold NaN gaps.

    ``np.nanquantile`` falls back to a per-row Python loop when rows hold NaN; sorting once
    (NaN sorts last) and indexing by each row's count of valid points is one vectorised pass.
    Returns the quantiles (NaN where a row has fewer than ``min_points``) and the counts.
    """
    ordered = np.sort(window, axis=-1)
    count = np.sum(~np.isnan(window), axis=-1)
    enough = count >= min_points
    return [np.where(enough, _quantile_of_sorted(ordered, count, q), np.nan)
            for q in quantiles], count


def _quantile_of_sorted(ordered: np.ndarray, count: np.ndarray, q: float) -> np.ndarray:
    if ordered.shape[-1] == 0:
        return np.full(ordered.shape[:-1], np.nan)
    position = q * np.maximum(count - 1, 0)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, np.maximum(count - 1, 0))
    low = np.take_along_axis(ordered, below[..., None], axis=-1)[..., 0]
    high = np.take_along_axis(ordered, above[..., None], axis=-1)[..., 0]
    # Written as low + f*(high-low) so that equal neighbours give back exactly that value: a
    # constant series then gets a band of exactly zero width around exactly its value.
    result = low + (position - below) * (high - low)
    return np.where(count > 0, result, np.nan)


def robust_centre_and_sigma(window: np.ndarray, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Median and a robust sigma along the last axis: max(1.4826 MAD, 1.2533 mean abs deviation).

    The MAD alone is zero for count-like series that are mostly one value (an error count that
    is 0 three times out of four), which would flag every ordinary 1. The mean absolute
    deviation from the mean is not fooled by that (for Poisson counts it is close to the true
    sigma, where the deviation from the median, the mode, is not) and a spike moves it only in
    proportion to its size over the window's length; taking the larger of the two keeps
    Gaussian data at about one sigma.
    """
    (smallest, centre, largest), count = sorted_quantiles(window, (0.0, 0.5, 1.0), min_points)
    (mad,), _ = sorted_quantiles(np.abs(window - centre[..., None]), (0.5,), min_points)
    valid = ~np.isnan(window)
    valid_count = np.maximum(count, 1)
    mean = np.sum(window, axis=-1, where=valid) / valid_count
    mean_abs = np.sum(np.abs(window - mean[..., None]), axis=-1, where=valid) / valid_count
    sigma = np.maximum(MAD_TO_SIGMA * mad, MEAN_ABS_TO_SIGMA * mean_abs)
    # A constant window: the float mean can miss the value by an ulp; the band must be 0 wide.
    sigma[smallest == largest] = 0.0
    return centre, np.where(count >= min_points, sigma, np.nan)


# Elements per chunk of stacked windows: a few MiB, so that a chunk stays in cache-friendly
# sizes and the Python overhead per chunk is paid a few hundred times, not once per point.
_CHUNK_ELEMENTS = 1 << 20


def refreshed_trailing(values: np.ndarray, window: int, refresh: int,
                       statistic: Callable[[np.ndarray], tuple[np.ndarray, ...]]
                       ) -> tuple[np.ndarray, ...]:
    """Causal trailing-window statistics, recomputed every ``refresh`` columns.

    The statistic for columns ``[s, s + refresh)`` is computed from columns ``[s - window, s)``:
    exactly what a model refitted at ``s`` would forecast, so that the streaming detector and
    the baseliner's periodic refit agree. ``statistic`` maps windows stacked along the last
    axis, ``(n_series, n_windows, window)``, to arrays of shape ``(n_series, n_windows)``; the
    result holds one ``(n_series, n_points)`` array per statistic (NaN-padded windows before
    column ``window``, which the statistic's minimum count turns into NaN).
    """
    n_series, n_points = values.shape
    padded = np.concatenate([np.full((n_series, window), np.nan), values], axis=1)
    # Window i of the view covers padded[:, i:i+window], i.e. columns [i-window, i) of values.
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)
    starts = np.arange(0, n_points, refresh)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(1, n_series * window))
    chunks = [statistic(windows[:, starts[c:c + per_chunk], :])
              for c in range(0, starts.size, per_chunk)]
    if not chunks:   # no column at all: ask the statistic for its arity on an empty window
        return tuple(np.full((n_series, 0), np.nan) for _ in statistic(windows[:, :0, :]))
    per_block = [np.concatenate(parts, axis=1) for parts in zip(*chunks)]
    return tuple(np.repeat(block, refresh, axis=1)[:, :n_points] for block in per_block)


def constant_forecast(stats: tuple[np.ndarray, ...], n_timestamps: int) -> tuple[np.ndarray, ...]:
    """Per-series values repeated over ``n_timestamps`` columns (a flat forecast)."""
    return tuple(np.repeat(stat[:, None], n_timestamps, axis=1) for stat in stats)


class FlatBaseline:
    """A fitted band that is the same at every future timestamp (one value per series)."""

    def __init__(self, expected: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        self.expected, self.lower, self.upper = clean_band(expected, lower, upper)

    def bands(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = as_future(timestamps).shape[0]
        expected, lower, upper = constant_forecast((self.expected, self.lower, self.upper), n)
        return expected, lower, upper


def shift_right(array: np.ndarray) -> np.ndarray:
    """Each row moved one column right, NaN first: the statistic ending at column t-1 becomes the
    band of column t (no look-ahead)."""
    shifted = np.empty_like(array)
    shifted[:, :1] = np.nan
    shifted[:, 1:] = array[:, :-1]
    return shifted
