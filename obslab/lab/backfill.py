"""Simulated series into Prometheus: OpenMetrics text and promtool blocks.

:func:`write_openmetrics` writes one OpenMetrics document of :class:`obslab.sim.series.Series`
for a time window; :func:`create_blocks` runs ``promtool tsdb create-blocks-from openmetrics``
on it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import IO

import numpy as np

from obslab.conventions import MetricSpec
from obslab.settings import ConfigError
from obslab.sim.series import Labels, Series

# promtool cuts blocks at multiples of the block duration since the epoch. 18 h is one of the
# TSDB's own compaction ranges (2h x 3^n) and within the largest block any retention from 7.5
# days up allows (10 % of it), so Prometheus treats these blocks like its own. One OpenMetrics
# file per block window means promtool parses every sample twice (bounds, then the block), not
# once per block of the whole file, as it does with a single file.
BLOCK_SECONDS = 18 * 3600
PROMTOOL_INSTALL_HINT = "install Prometheus's tools (Debian: apt-get install prometheus; or `obslab doctor --install`)"


# --- OpenMetrics text ------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(spec: MetricSpec) -> str:
    return spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name


def _text(values: np.ndarray) -> list[str]:
    if np.issubdtype(values.dtype, np.integer):
        return [str(v) for v in values.tolist()]
    # repr of a float round-trips: a running total never appears to go down.
    return [repr(v) for v in values.astype(float).tolist()]


def write_openmetrics(out: IO[str], timestamps: np.ndarray, series: Sequence[Series]) -> int:
    """Write one OpenMetrics document (families not interleaved, ``# EOF``); returns samples.

    The samples of one histogram labelset are written per timestamp (buckets, count, sum), as
    the format's MetricPoints are.
    """
    stamps = [str(int(t)) if float(t).is_integer() else repr(float(t)) for t in np.asarray(timestamps).tolist()]
    families: dict[str, list[Series]] = {}
    for item in series:
        families.setdefault(item.spec.name, []).append(item)
    written = 0
    for items in families.values():
        spec = items[0].spec
        out.write(f"# HELP {_family(spec)} {_escape(spec.help)}\n# TYPE {_family(spec)} {spec.kind}\n")
        points: dict[Labels, list[Series]] = {}
        for item in items:
            points.setdefault(tuple(kv for kv in item.labels if kv[0] != "le"), []).append(item)
        for members in points.values():
            columns = []
            for item in members:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in item.labels)
                prefix = f"{item.name}{{{labels}}} "
                columns.append([f"{prefix}{v} {t}\n" for v, t in zip(_text(item.values), stamps)])
            out.writelines(chain.from_iterable(zip(*columns)))
            written += len(members) * len(stamps)
    out.write("# EOF\n")
    return written


# --- promtool and the TSDB directory -----------------------------------------------------


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise ConfigError(f"promtool is not on PATH; {PROMTOOL_INSTALL_HINT}")
    return path


def create_blocks(openmetrics_file: Path, tsdb_dir: Path, *, binary: str | None = None) -> subprocess.Popen:
    """Start promtool turning one OpenMetrics file into TSDB blocks inside ``tsdb_dir``."""
    return subprocess.Popen(
        [binary or promtool(), "tsdb", "create-blocks-from", "openmetrics",
         f"--max-block-duration={BLOCK_SECONDS // 3600}h", "--quiet", str(openmetrics_file), str(tsdb_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@dataclass(frozen=True)
class Block:
    ulid: str
    min_time: float     # Unix seconds, inclusive
    max_time: float     # Unix seconds, exclusive
    path: Path


def blocks(tsdb_dir: Path) -> list[Block]:
    """The persisted blocks of a TSDB directory (not its head, which lives in the WAL)."""
    found = []
    if not tsdb_dir.is_dir():
        return found
    for meta_path in tsdb_dir.glob("*/meta.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue  # a block being written or deleted right now
        found.append(Block(meta_path.parent.name, meta["minTime"] / 1000, meta["maxTime"] / 1000, meta_path.parent))
    return sorted(found, key=lambda b: b.min_time)


def wal_has_data(tsdb_dir: Path) -> bool:
    wal = tsdb_dir / "wal"
    return wal.is_dir() and any(p.is_file() and p.stat().st_size > 0 for p in wal.rglob("*"))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
