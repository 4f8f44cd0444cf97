"""A NAB root on disk: its data files and their anomaly windows, checked before anything runs.

A NAB root holds ``data/<category>/<file>.csv`` (columns ``timestamp,value``) and
``labels/combined_windows.json`` (relative path -> list of ``[start, end]`` timestamps). Every
check NAB's own ``nab/labeler.py`` (``CorpusLabel.getWindows``) makes is made here, up front and
with a message that names the file to fix: a CSV the label file does not name, a window
timestamp that is not a row of its file, a CSV that does not parse. Files the label file names
but the root lacks are allowed (a subset of the corpus, such as the development copy without
the held-out categories); :attr:`Corpus.missing` lists them so that a report can say that its
scores are not comparable with NAB's published table.

Windows are kept as inclusive row indices, the form the scorer works on. Rows are taken in file
order, as NAB's scorer takes them: timestamps may repeat (four NAB files have duplicate rows) or
step back (a daylight-saving change or a clock correction in a real export), and such rows are
scored where they stand, never refused. A window limit is the first row at exactly its timestamp,
as NAB's ``Sweeper`` finds it (``timestamps.index``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from obslab.settings import ConfigError

WINDOWS_FILE = Path("labels") / "combined_windows.json"
DATA_DIR = "data"


class NabDataError(ConfigError):
    """A NAB root that cannot be scored; the message names the file and what to fix."""


@dataclass(frozen=True)
class DataFile:
    """One labelled series: ``path`` relative to ``data/`` (``category/name.csv``), as NAB names it."""

    path: str
    timestamp_text: np.ndarray      # the CSV's own timestamp strings, written back unchanged
    timestamps: np.ndarray          # Unix seconds (naive CSV times read as UTC)
    values: np.ndarray
    windows: tuple[tuple[int, int], ...] = field(default=())   # inclusive row indices, in order

    @property
    def category(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def __len__(self) -> int:
        return len(self.values)

    def labels(self) -> np.ndarray:
        """1 for a row whose time is inside a window, else 0 (the ``label`` column of NAB's
        results files, as ``CorpusLabel.getLabels`` sets it: by time, so a repeated last
        timestamp is labelled too)."""
        labels = np.zeros(len(self), dtype=np.int8)
        for first, last in self.windows:
            labels[(self.timestamps >= self.timestamps[first]) & (self.timestamps <= self.timestamps[last])] = 1
        return labels


@dataclass(frozen=True)
class Corpus:
    root: Path
    files: tuple[DataFile, ...]
    labelled: tuple[str, ...]       # every file the label file names, present or not

    @property
    def missing(self) -> tuple[str, ...]:
        present = {f.path for f in self.files}
        return tuple(p for p in self.labelled if p not in present)

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def windows(self) -> int:
        return sum(len(f.windows) for f in self.files)

    @property
    def rows(self) -> int:
        return sum(len(f) for f in self.files)


def load_corpus(root: str | Path) -> Corpus:
    """Read and check every data file under ``root/data`` and its windows."""
    root = Path(root).expanduser()
    data_dir, windows_path = root / DATA_DIR, root / WINDOWS_FILE
    if not root.is_dir():
        raise NabDataError(f"--data {root} is not a directory; pass a NAB root holding data/ and labels/")
    if not data_dir.is_dir():
        raise NabDataError(f"{root} has no data/ folder; a NAB root holds data/<category>/*.csv "
                           f"and {WINDOWS_FILE}")
    if not windows_path.is_file():
        raise NabDataError(f"{root} has no {WINDOWS_FILE}; copy it from the NAB repository next to data/")
    windows = read_windows(windows_path)
    csv_paths = sorted(p for p in data_dir.rglob("*.csv") if not p.name.startswith("."))
    if not csv_paths:
        raise NabDataError(f"{data_dir} holds no CSV files; expected data/<category>/<file>.csv")
    files = []
    for csv_path in csv_paths:
        relative = csv_path.relative_to(data_dir).as_posix()
        if relative not in windows:
            raise NabDataError(f"data/{relative} is not in {WINDOWS_FILE}: add it with its windows "
                               f"(an empty list if it has none) or remove the file")
        files.append(read_data_file(csv_path, relative, windows[relative]))
    return Corpus(root, tuple(files), tuple(windows))


def read_windows(path: Path) -> dict[str, list[tuple[str, str]]]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NabDataError(f"{path} is not valid JSON ({exc}); restore NAB's label file") from None
    if not isinstance(raw, dict):
        raise NabDataError(f"{path} must map data file paths to lists of [start, end] windows")
    windows: dict[str, list[tuple[str, str]]] = {}
    for relative, limits in raw.items():
        if not isinstance(limits, list) or not all(
                isinstance(w, list) and len(w) == 2 and all(isinstance(t, str) for t in w) for w in limits):
            raise NabDataError(f"{path}: the windows of {relative!r} must be a list of "
                               f"[start, end] timestamp strings")
        windows[relative] = [(start, end) for start, end in limits]
    return windows


def read_data_file(path: Path, relative: str, limits: Sequence[tuple[str, str]] = ()) -> DataFile:
    """One CSV with NAB's columns; ``limits`` are its windows as timestamps."""
    try:
        frame = pd.read_csv(path, dtype={"timestamp": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise NabDataError(f"data/{relative} is not a readable CSV ({_first_line(exc)})") from None
    if list(frame.columns[:2]) != ["timestamp", "value"]:
        raise NabDataError(f"data/{relative} must start with the columns timestamp,value "
                           f"(found {','.join(map(str, frame.columns))})")
    if frame.empty:
        raise NabDataError(f"data/{relative} has no rows")
    text = frame["timestamp"].astype(str).to_numpy()
    parsed = pd.to_datetime(frame["timestamp"], format="ISO8601", errors="coerce")
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise NabDataError(f"data/{relative} line {row + 2}: timestamp {text[row]!r} is not "
                           f"YYYY-MM-DD HH:MM:SS")
    values = pd.to_numeric(frame["value"], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise NabDataError(f"data/{relative} line {row + 2}: value {frame['value'].iloc[row]!r} is not a number")
    stamps = parsed.to_numpy(dtype="datetime64[ns]")
    windows = _window_rows(stamps, limits, relative)
    return DataFile(relative, text, stamps.astype("int64") / 1e9, values.to_numpy(dtype=float), windows)


def _window_rows(stamps: np.ndarray, limits: Sequence[tuple[str, str]],
                 relative: str) -> tuple[tuple[int, int], ...]:
    rows = []
    for start, end in limits:
        first, last = _row_of(stamps, start, relative), _row_of(stamps, end, relative)
        if last < first:
            raise NabDataError(f"{WINDOWS_FILE}: window [{start}, {end}] of {relative} ends before it starts")
        rows.append((first, last))
    rows.sort()
    for (_, previous_last), (first, _) in zip(rows, rows[1:]):
        if first <= previous_last:
            raise NabDataError(f"{WINDOWS_FILE}: windows of {relative} overlap; merge them into one")
    return tuple(rows)


def _row_of(stamps: np.ndarray, text: str, relative: str) -> int:
    """First row at exactly ``text`` (NAB matches window limits to rows exactly, first match)."""
    try:
        wanted = pd.Timestamp(text).to_datetime64()
    except ValueError:
        raise NabDataError(f"{WINDOWS_FILE}: {text!r} (a window of {relative}) is not a timestamp") from None
    matches = np.flatnonzero(stamps == wanted)
    if not len(matches):
        raise NabDataError(f"{WINDOWS_FILE}: window timestamp {text} of {relative} is not a row of "
                           f"data/{relative}; window limits must match a row's timestamp exactly")
    return int(matches[0])


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
