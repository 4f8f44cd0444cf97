"""Auto-baselining: four algorithms and their ensemble, on the protocol of ``obslab.ml.protocol``.

Each algorithm models "normal" differently, and each is wrong in its own way (see its module):

- ``zscore`` (:class:`ZScore`): trailing mean +/- k sigma; stationary symmetric noise.
- ``seasonal_mad`` (:class:`SeasonalMAD`): hour-of-day / hour-of-week median +/- k robust sigma;
  seasonal traffic, spike-proof.
- ``holt_winters`` (:class:`HoltWinters`): robust damped-trend exponential smoothing with a daily
  season; ramps, drifts, short histories, level shifts.
- ``quantile`` (:class:`TrailingQuantile`): trailing median with stretched 5 %/95 % quantiles;
  skewed latency distributions.
- ``ensemble`` (:class:`Ensemble`): per-point median of their bands, the recommended threshold.

>>> [d.name for d in all_detectors()]
['zscore', 'seasonal_mad', 'holt_winters', 'quantile', 'ensemble']
"""

from __future__ import annotations

from obslab.ml.baselining.ensemble import Ensemble, EnsembleBaseline, median_band
from obslab.ml.baselining.holt_winters import HoltWinters, HoltWintersBaseline
from obslab.ml.baselining.quantile import TrailingQuantile
from obslab.ml.baselining.seasonal import SeasonalBaseline, SeasonalMAD
from obslab.ml.baselining.zscore import ZScore
from obslab.ml.protocol import BaselineAlgorithm

__all__ = [
    "ALGORITHMS",
    "Ensemble",
    "EnsembleBaseline",
    "HoltWinters",
    "HoltWintersBaseline",
    "SeasonalBaseline",
    "SeasonalMAD",
    "TrailingQuantile",
    "ZScore",
    "all_detectors",
    "by_name",
    "ensemble",
    "median_band",
    "names",
]

# Default instances. They are frozen dataclasses (no state between calls), so sharing them is
# safe; build your own, e.g. ``ZScore(window_s=7200)``, to change a parameter.
ALGORITHMS: tuple[BaselineAlgorithm, ...] = (ZScore(), SeasonalMAD(), HoltWinters(),
                                             TrailingQuantile())


def ensemble() -> Ensemble:
    """The ensemble of the default algorithms."""
    return Ensemble(ALGORITHMS)


def all_detectors() -> tuple[BaselineAlgorithm, ...]:
    """The four algorithms then the ensemble, always in this order."""
    return (*ALGORITHMS, ensemble())


def names() -> tuple[str, ...]:
    return tuple(detector.name for detector in all_detectors())


def by_name(name: str) -> BaselineAlgorithm:
    """The default detector called ``name``; ValueError listing the known names otherwise."""
    for detector in all_detectors():
        if detector.name == name:
            return detector
    raise ValueError(f"unknown baselining algorithm {name!r}; choose one of: {', '.join(names())}")
