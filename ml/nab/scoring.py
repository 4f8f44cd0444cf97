"""NAB's scoring rules, vectorised: the same numbers NAB computes, for a whole corpus in one pass.

Mirrors numenta/NAB at commit ea702d75cc2258d9d7dd35ca8e5e2539d71f3140 (the commit the shared
NAB data comes from), function by function:

- ``nab/sweeper.py``: ``scaledSigmoid`` -> :func:`scaled_sigmoid`;
  ``Sweeper._getProbationaryLength`` (= ``nab/util.py`` ``getProbationPeriod``:
  ``min(floor(0.15 * rows), 0.15 * 5000)``) -> :func:`probation_length`;
  ``Sweeper.calcSweepScore`` (each row's weight: inside a window by its position relative to
  the window's right edge, ``-(right - i + 1) / width``, scaled so that the window's first row
  earns exactly ``tpWeight``; outside, by its distance after the preceding window's right edge
  in units of ``width - 1``, or -1 before any window, times ``fpWeight``) -> :class:`SweepTable`;
  ``Sweeper.calcScoreByThreshold`` (rows sorted by anomaly score; at each distinct score, the
  corpus score with every row at or above it detected: the sum of the false positives' weights
  plus, per window, the best weight among its detected rows, which is its earliest detection,
  or ``-fnWeight`` if none) -> :func:`scores_by_threshold`;
  ``Sweeper.scoreDataSet`` (a file's score at a given threshold, with NAB's TP/TN/FP/FN row
  counts) -> :func:`file_scores`.
- ``nab/optimizer.py`` ``optimizeThreshold``: one threshold per detector and profile, the one
  with the highest corpus score, ties to the higher threshold (Python's stable sort keeps the
  first, highest, of equal scores) -> :func:`optimize_threshold`.
- ``nab/runner.py`` ``Runner.normalize``: ``100 * (score - null) / (perfect - null)`` where
  ``null`` is the optimised score of ``nab/detectors/null`` (a constant 0.5) and ``perfect`` is
  the number of windows times ``tpWeight`` -> :func:`normalise`, :func:`null_score`.
- ``config/profiles.json``: the three cost matrices -> :data:`PROFILES`.

Where NAB loops over rows in Python, this sorts the anomaly scores once and takes cumulative
sums: a window's contribution only grows while the threshold falls, so each row adds the amount
by which it raises its window's best weight (pandas' grouped running maximum) and the score at a
threshold is a prefix sum. Two deliberate differences, both for inputs NAB itself cannot score:
``perfect`` counts the windows of the scored files only (NAB counts every window of the label
file, which is only right when every labelled file is scored); and a false positive after a
one-row window (NAB divides by ``width - 1 = 0``) counts as far from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

PROBATION_PERCENT = 0.15
START_THRESHOLD = 1.1               # above every score: nothing detected (calcScoreByThreshold)
OUTSIDE = -1                        # window index of a row outside every window


@dataclass(frozen=True)
class Profile:
    """One application profile: ``CostMatrix`` of NAB's ``config/profiles.json``."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float
    tn_weight: float = 1.0          # in the file, but NAB's scoring never uses it


PROFILES: tuple[Profile, ...] = (
    Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
    Profile("reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
    Profile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
)


@dataclass(frozen=True)
class LabelledSeries:
    """What the scorer needs of a data file: its name, row count and windows (inclusive rows)."""

    name: str
    length: int
    windows: tuple[tuple[int, int], ...]


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """``2 * sigmoid(-5 x) - 1``, and -1 beyond 3 (``sweeper.scaledSigmoid``)."""
    x = np.asarray(position, dtype=float)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x > 3.0, -1.0, value)


MAX_TP = float(scaled_sigmoid(-1.0))


def probation_length(rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file that are never scored: 15 % of it, at most 750."""
    # NAB compares row indices with this float bound: ceil gives the same first scored row.
    return math.ceil(min(math.floor(percent * rows), percent * 5000))


@dataclass(frozen=True)
class SweepTable:
    """Every row of a corpus, concatenated file after file, with its profile-free weight.

    ``window`` is the corpus-wide index of the row's window or :data:`OUTSIDE`; ``scorable`` is
    False in each file's probationary period; ``base`` is the row's weight before the profile:
    a fraction of ``tpWeight`` inside a window (1.0 on its first row), a multiple of
    ``fpWeight`` outside.
    """

    names: tuple[str, ...]
    lengths: np.ndarray
    window: np.ndarray
    scorable: np.ndarray
    base: np.ndarray
    window_file: np.ndarray          # file index of each window
    window_rows: np.ndarray          # (windows, 2): corpus-wide first and last row of each window

    @property
    def windows(self) -> int:
        return len(self.window_file)

    @property
    def file_of_row(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.names)), self.lengths)

    def weights(self, profile: Profile) -> np.ndarray:
        """Per-row sweep score of ``profile`` (``AnomalyPoint.sweepScore``)."""
        return self.base * np.where(self.window >= 0, profile.tp_weight, profile.fp_weight)


def sweep_table(series: Sequence[LabelledSeries], probation_percent: float = PROBATION_PERCENT) -> SweepTable:
    """The profile-free part of ``Sweeper.calcSweepScore`` for every file of a corpus."""
    windows, bases, window_file, window_rows = [np.zeros(0, int)], [np.zeros(0)], [], []
    scorable = [np.zeros(0, bool)]
    offset = 0
    for number, item in enumerate(series):
        window, base = _file_sweep(item, first_window=len(window_file))
        scorable.append(np.arange(item.length) >= probation_length(item.length, probation_percent))
        windows.append(window)
        bases.append(base)
        window_file += [number] * len(item.windows)
        window_rows += [(offset + left, offset + right) for left, right in item.windows]
        offset += item.length
    return SweepTable(tuple(s.name for s in series), np.array([s.length for s in series], dtype=int),
                      np.concatenate(windows), np.concatenate(scorable), np.concatenate(bases),
                      np.array(window_file, dtype=int),
                      np.array(window_rows, dtype=int).reshape(-1, 2))


def _file_sweep(item: LabelledSeries, first_window: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(item.length)
    window = np.full(item.length, OUTSIDE, dtype=int)
    base = np.full(item.length, -1.0)        # outside, before any window: as far as can be
    previous_right = None
    for offset, (left, right) in enumerate(item.windows):
        if not 0 <= left <= right < item.length:
            raise ValueError(f"{item.name}: window rows ({left}, {right}) outside 0..{item.length - 1}")
        if previous_right is not None and left <= previous_right:
            raise ValueError(f"{item.name}: windows overlap or are out of order")
        width = right - left + 1
        inside = slice(left, right + 1)
        window[inside] = first_window + offset
        base[inside] = scaled_sigmoid(-(right - rows[inside] + 1) / width) / MAX_TP
        previous_right = right
        after = rows[right + 1: item.windows[offset + 1][0] if offset + 1 < len(item.windows) else None]
        base[after] = (scaled_sigmoid((after - right) / (width - 1)) if width > 1 else -1.0)
    return window, base


@dataclass(frozen=True)
class ThresholdScores:
    """``calcScoreByThreshold`` for a corpus: thresholds from 1.1 down, and the score at each."""

    thresholds: np.ndarray
    scores: np.ndarray

    def best(self) -> tuple[float, float]:
        """``optimizeThreshold``: the highest score; among equal ones the highest threshold."""
        index = int(np.argmax(self.scores))
        return float(self.thresholds[index]), float(self.scores[index])


def _check_scores(table: SweepTable, anomaly_scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(anomaly_scores, dtype=float)
    if scores.shape != table.window.shape:
        raise ValueError(f"{len(scores)} anomaly scores for a corpus of {len(table.window)} rows")
    if np.isnan(scores).any():
        raise ValueError("anomaly scores contain NaN; score an undefined point 0")
    return scores


def scores_by_threshold(table: SweepTable, anomaly_scores: np.ndarray, profile: Profile) -> ThresholdScores:
    """The corpus score at every distinct anomaly score, highest threshold first."""
    scores = _check_scores(table, anomaly_scores)
    scorable = table.scorable
    window, weight, value = table.window[scorable], table.weights(profile)[scorable], scores[scorable]
    if not len(value):
        return ThresholdScores(np.array([START_THRESHOLD]), np.array([0.0]))
    order = np.argsort(-value, kind="stable")
    window, weight, value = window[order], weight[order], value[order]

    # A window starts at -fnWeight if any of its rows is scorable (_prepareScoreByThresholdParts).
    scored_windows = np.unique(window[window >= 0])
    start = -profile.fn_weight * len(scored_windows)
    gain = np.where(window == OUTSIDE, weight, 0.0)
    inside = window >= 0
    if inside.any():
        best = pd.Series(weight[inside]).groupby(window[inside]).cummax().to_numpy()
        before = pd.Series(best).groupby(window[inside]).shift(1).fillna(-profile.fn_weight).to_numpy()
        gain[inside] = best - before
    running = start + np.cumsum(gain)
    # The score of a threshold is the one after its last row (all rows at or above it detected).
    last_of_value = np.flatnonzero(np.append(value[1:] != value[:-1], True))
    return ThresholdScores(np.concatenate([[START_THRESHOLD], value[last_of_value]]),
                           np.concatenate([[start], running[last_of_value]]))


def optimize_threshold(table: SweepTable, anomaly_scores: np.ndarray, profile: Profile) -> tuple[float, float]:
    """(threshold, raw corpus score) that ``nab/optimizer.py`` would pick."""
    return scores_by_threshold(table, anomaly_scores, profile).best()


@dataclass(frozen=True)
class FileScore:
    """One row of NAB's ``<detector>_<profile>_scores.csv``."""

    file: str
    threshold: float
    score: float
    tp: int
    tn: int
    fp: int
    fn: int

    @property
    def total(self) -> int:
        return self.tp + self.tn + self.fp + self.fn


def file_scores(table: SweepTable, anomaly_scores: np.ndarray, profile: Profile,
                threshold: float) -> list[FileScore]:
    """Every file's score and row counts with detections at ``anomaly_score >= threshold``."""
    scores = _check_scores(table, anomaly_scores)
    files = table.file_of_row
    scorable = table.scorable
    detected = scorable & (scores >= threshold)
    inside, outside = table.window >= 0, table.window == OUTSIDE
    weight = table.weights(profile)
    n = len(table.names)
    fp_score = np.bincount(files[detected & outside], weight[detected & outside], minlength=n)

    window_best = np.full(table.windows, -profile.fn_weight)
    hits = detected & inside
    np.maximum.at(window_best, table.window[hits], weight[hits])
    scored_window = np.zeros(table.windows, dtype=bool)
    scored_window[table.window[scorable & inside]] = True
    window_score = np.bincount(table.window_file[scored_window], window_best[scored_window], minlength=n)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(files[mask], minlength=n)

    tp, fp = count(hits), count(detected & outside)
    fn, tn = count(scorable & inside & ~detected), count(scorable & outside & ~detected)
    return [FileScore(name, threshold, float(fp_score[i] + window_score[i]), int(tp[i]), int(tn[i]),
                      int(fp[i]), int(fn[i])) for i, name in enumerate(table.names)]


def null_score(table: SweepTable, profile: Profile) -> float:
    """Optimised raw score of NAB's null detector (every row scored 0.5): the 0 of the scale."""
    return optimize_threshold(table, np.full(len(table.window), 0.5), profile)[1]


def perfect_score(table: SweepTable, profile: Profile) -> float:
    """One detection on the first row of every window, nothing else: the 100 of the scale."""
    return table.windows * profile.tp_weight


def normalise(raw: float, null: float, perfect: float) -> float:
    """``Runner.normalize``: 0 for the null detector, 100 for the perfect one."""
    if perfect == null:
        raise ValueError("the corpus has no window to detect: its scores cannot be normalised")
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float

    @property
    def normalised(self) -> float:
        return normalise(self.raw, self.null, self.perfect)


def score_detector(table: SweepTable, anomaly_scores: np.ndarray,
                   profiles: Sequence[Profile] = PROFILES) -> dict[str, ProfileResult]:
    """Optimise, score and normalise one detector's anomaly scores in every profile."""
    results = {}
    for profile in profiles:
        threshold, raw = optimize_threshold(table, anomaly_scores, profile)
        results[profile.name] = ProfileResult(profile.name, threshold, raw, null_score(table, profile),
                                              perfect_score(table, profile))
    return results


def perfect_detections(table: SweepTable) -> np.ndarray:
    """Anomaly scores of the perfect detector: 1 on each window's first row, 0 elsewhere."""
    scores = np.zeros(len(table.window))
    scores[table.window_rows[:, 0]] = 1.0
    return scores
