"""Simulated series as a scrape would see them: per-step values, and counters that accumulate.

A generator (the IIS model, the banking model) describes each exposed sample as a
:class:`Series` of per-step values; :class:`Accumulator` turns counter increments into the
running totals a scrape would have seen. The live IIS exporter and generated history
(:mod:`obslab.lab.backfill`) use the same series and accumulator, so history and live data carry
identical names and label values (``le="1.0"`` and ``le="1"`` would be two different series in
Prometheus 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from prometheus_client.utils import floatToGoString

from obslab.conventions import MetricSpec

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Series:
    """One exposed sample (name + labels) over a run of steps.

    ``cumulative`` series (counters and a histogram's ``_bucket``/``_count``/``_sum``) carry
    per-step increments until an :class:`Accumulator` turns them into running totals; the
    others (gauges) carry the value at each step.
    """

    spec: MetricSpec
    name: str
    labels: Labels
    values: np.ndarray
    cumulative: bool

    @property
    def key(self) -> tuple[str, Labels]:
        return self.name, self.labels


def _labels(spec: MetricSpec, values: Sequence[str], extra: Mapping[str, str]) -> Labels:
    if len(values) != len(spec.labels):
        raise ValueError(f"{spec.name} has labels {spec.labels}, got values {tuple(values)}")
    return (*zip(spec.labels, values), *extra.items())


def counter(spec: MetricSpec, label_values: Sequence[str], increments: np.ndarray,
            extra: Mapping[str, str] = {}) -> Series:  # noqa: B006 - never mutated
    return Series(spec, spec.name, _labels(spec, label_values, extra), np.asarray(increments), True)


def gauge(spec: MetricSpec, label_values: Sequence[str], values: np.ndarray,
          extra: Mapping[str, str] = {}) -> Series:  # noqa: B006 - never mutated
    return Series(spec, spec.name, _labels(spec, label_values, extra), np.asarray(values), False)


def le_value(bound: float) -> str:
    """The ``le`` label value exactly as prometheus-client writes it (``1.0``, ``0.05``, ``+Inf``)."""
    return floatToGoString(bound)


def histogram(spec: MetricSpec, label_values: Sequence[str], bucket_counts: np.ndarray,
              sums: np.ndarray, extra: Mapping[str, str] = {}) -> list[Series]:  # noqa: B006
    """Series of one histogram from per-step counts per bucket (last: above the top bound)."""
    if spec.buckets is None:
        raise ValueError(f"{spec.name} is not a histogram with buckets")
    counts = np.asarray(bucket_counts)
    if counts.shape[-1] != len(spec.buckets) + 1:
        raise ValueError(f"{spec.name}: expected {len(spec.buckets) + 1} buckets, got {counts.shape[-1]}")
    base = _labels(spec, label_values, extra)
    cumulative = np.cumsum(counts, axis=-1)
    bounds = [*map(le_value, spec.buckets), le_value(float("inf"))]
    series = [Series(spec, f"{spec.name}_bucket", (*base, ("le", le)), cumulative[..., i], True)
              for i, le in enumerate(bounds)]
    series.append(Series(spec, f"{spec.name}_count", base, cumulative[..., -1], True))
    series.append(Series(spec, f"{spec.name}_sum", base, np.asarray(sums, dtype=float), True))
    return series


class Accumulator:
    """Running totals of cumulative series across consecutive runs of steps."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, Labels], float | int] = {}

    def apply(self, series: Iterable[Series]) -> list[Series]:
        out = []
        for item in series:
            if not item.cumulative:
                out.append(item)
                continue
            start = self.totals.get(item.key, 0)
            # Adding in one left-to-right pass from the previous total keeps float sums identical
            # however the steps were batched.
            running = np.cumsum(np.concatenate([[start], item.values]))[1:]
            if len(running):
                last = running[-1]
                self.totals[item.key] = last.item() if hasattr(last, "item") else last
            out.append(replace(item, values=running))
        return out


