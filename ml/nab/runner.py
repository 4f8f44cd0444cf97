"""Run streaming detectors over a NAB corpus, write NAB's results files, score them NAB's way.

Each detector sees one file at a time as a batch of one series (``values`` of shape ``(1, n)``)
through :meth:`~obslab.ml.protocol.BaselineAlgorithm.causal`, which never looks ahead: the
score of row ``t`` comes from rows before it, as NAB's rules for streaming detectors require.
Results land where NAB's ``nab/detectors/base.py`` ``detectDataSet`` puts them,
``<out>/<detector>/<category>/<detector>_<file>.csv`` with the columns ``timestamp,value,
anomaly_score,label``, so that NAB's own scorer could read them. Scores are written with full
precision: the scorer here reads the same numbers from memory that NAB would read from disk.

The protocol wants strictly increasing timestamps; real exports repeat a timestamp (four NAB
files do: a duplicated row) or step back (a daylight-saving change, a clock correction). A
detector sees a repeated row :data:`REPEAT_NUDGE_SECONDS` after the one before it, and after a
step back the rest of the file shifted forward so that the row comes one usual interval after
its predecessor (the spacing the detector learns from stays as it was); the results files and
the scoring keep the files' own timestamps and order.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from obslab.ml.nab.corpus import DataFile
from obslab.ml.nab.scoring import (PROFILES, FileScore, LabelledSeries, Profile, ProfileResult,
                                   SweepTable, file_scores, score_detector, sweep_table)
from obslab.ml.protocol import Bands

RESULT_COLUMNS = ("timestamp", "value", "anomaly_score", "label")
REPEAT_NUDGE_SECONDS = 0.001


class Detector(Protocol):
    """What the benchmark needs of a detector (every baselining algorithm is one)."""

    name: str

    def causal(self, values: np.ndarray, timestamps: np.ndarray) -> Bands: ...


def anomaly_scores(detector: Detector, data: DataFile) -> np.ndarray:
    """The detector's score for every row of one file, in [0, 1] (0 where it has none)."""
    bands = detector.causal(data.values[None, :], strictly_increasing(data.timestamps))
    scores = np.asarray(bands.score, dtype=float)
    if scores.shape not in ((1, len(data)), (len(data),)):
        raise ValueError(f"{detector.name}: causal() returned scores of shape {scores.shape} "
                         f"for {len(data)} points of {data.path}")
    return np.clip(np.nan_to_num(scores.reshape(-1), nan=0.0), 0.0, 1.0)


def strictly_increasing(timestamps: np.ndarray) -> np.ndarray:
    """``timestamps`` made strictly increasing in file order: after a step back, every later row
    moves forward by the step plus one usual interval; a repeat moves :data:`REPEAT_NUDGE_SECONDS`
    after its predecessor."""
    if len(timestamps) < 2 or bool(np.all(np.diff(timestamps) > 0)):
        return timestamps
    nudged = np.array(timestamps, dtype=float)
    steps = np.diff(nudged)
    forward = steps[steps > 0]
    usual = float(np.median(forward)) if len(forward) else 1.0
    nudged[1:] += np.cumsum(np.where(steps < 0, usual - steps, 0.0))
    for i in np.flatnonzero(np.diff(nudged) <= 0) + 1:     # a handful of rows in a whole corpus
        for j in range(i, len(nudged)):
            if nudged[j] > nudged[j - 1]:
                break
            nudged[j] = nudged[j - 1] + REPEAT_NUDGE_SECONDS
    return nudged


def results_path(out: Path, detector: str, data: DataFile) -> Path:
    """``<out>/<detector>/<category>/<detector>_<file>.csv``, as NAB names results files."""
    if not detector or "/" in detector or "\\" in detector:
        raise ValueError(f"detector name {detector!r} cannot be a folder name")
    return out / detector / data.category / f"{detector}_{data.name}"


def write_results(path: Path, data: DataFile, scores: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"timestamp": data.timestamp_text, "value": data.values, "anomaly_score": scores,
                  "label": data.labels()}, columns=list(RESULT_COLUMNS)).to_csv(path, index=False)


def labelled(files: Sequence[DataFile]) -> list[LabelledSeries]:
    return [LabelledSeries(f.path, len(f), f.windows) for f in files]


@dataclass(frozen=True)
class DetectorScores:
    """One detector on one corpus: per profile, the optimised threshold and the scores."""

    detector: str
    profiles: Mapping[str, ProfileResult]
    files: Mapping[str, list[FileScore]]       # per profile, NAB's per-file score table
    seconds: float

    def normalised(self) -> dict[str, float]:
        return {name: result.normalised for name, result in self.profiles.items()}


def score(table: SweepTable, detector: str, scores: np.ndarray, seconds: float = 0.0,
          profiles: Sequence[Profile] = PROFILES) -> DetectorScores:
    results = score_detector(table, scores, profiles)
    per_file = {p.name: file_scores(table, scores, p, results[p.name].threshold) for p in profiles}
    return DetectorScores(detector, results, per_file, seconds)


def write_score_tables(out: Path, scored: DetectorScores) -> list[Path]:
    """``<out>/<detector>/<detector>_<profile>_scores.csv``: NAB's per-file table with Totals."""
    paths = []
    for profile, rows in scored.files.items():
        frame = pd.DataFrame([(scored.detector, profile, r.file, r.threshold, r.score, r.tp, r.tn, r.fp, r.fn,
                               r.total) for r in rows],
                             columns=["Detector", "Profile", "File", "Threshold", "Score", "TP", "TN", "FP", "FN",
                                      "Total_Count"])
        totals = frame[["Score", "TP", "TN", "FP", "FN", "Total_Count"]].sum()
        frame.loc[len(frame)] = ["Totals", None, None, None, *totals.tolist()]
        path = out / scored.detector / f"{scored.detector}_{profile}_scores.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def run_detectors(files: Sequence[DataFile], detectors: Sequence[Detector], out: Path | None, *,
                  progress: Callable[[str], None] | None = None,
                  clock: Callable[[], float] | None = None) -> list[DetectorScores]:
    """Every detector over every file (results files under ``out`` unless it is None), scored."""
    clock = clock or time.perf_counter
    progress = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    names = [d.name for d in detectors]
    if len(set(names)) != len(names):
        raise ValueError(f"detector names must be unique, got {names}")
    # NAB's scorer reads a detector's name from a results file's name up to the first '_'.
    underscored = [name for name in names if "_" in name]
    if underscored:
        raise ValueError(f"detector names must not contain '_' (NAB's scorer would read "
                         f"{', '.join(n.split('_')[0] for n in underscored)}): rename {', '.join(underscored)} "
                         "in camelCase")
    table = sweep_table(labelled(files))
    scored = []
    for number, detector in enumerate(detectors, start=1):
        started = clock()
        per_file = []
        for done, data in enumerate(files, start=1):
            scores = anomaly_scores(detector, data)
            if out is not None:
                write_results(results_path(out, detector.name, data), data, scores)
            per_file.append(scores)
            if done == len(files) or done % 10 == 0:
                progress(f"[{number}/{len(detectors)}] {detector.name}: {done}/{len(files)} files "
                         f"({clock() - started:.1f} s)")
        result = score(table, detector.name, np.concatenate(per_file) if per_file else np.zeros(0),
                       clock() - started)
        if out is not None:
            write_score_tables(out, result)
        scored.append(result)
    return scored
