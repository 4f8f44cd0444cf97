"""Auto-baselining: four algorithms and their ensemble, on the protocol of ``obslab.ml.protocol``.

Each algorithm models "normal" differently, and each is wrong in its own way (see its module):

- ``zscore`` (:class:`ZScore`): trailing mean +/- k sigma; stationary symmetric noise.
- ``seasonalMad`` (:class:`SeasonalMAD`): hour-of-day / hour-of-week median +/- k robust sigma;
  seasonal traffic, spike-proof.
- ``holtWinters`` (:class:`HoltWinters`): robust damped-trend exponential smoothing with a daily
  season; ramps, drifts, short histories, level shifts.
- ``quantile`` (:class:`TrailingQuantile`): trailing median with stretched 5 %/95 % quantiles;
  skewed latency distributions.
- ``ensemble`` (:class:`Ensemble`): per-point median of their bands, the recommended threshold.

And one streaming detector that models no band of normal at all:

- ``levelNovelty`` (:class:`LevelNovelty`): the first visit of a value range never seen, at several
  resolutions; the best of them on NAB.

Names follow NAB's convention (camelCase, no underscore): NAB's scorer takes a detector's name
from a results file's name up to the first ``_``.

>>> [d.name for d in all_detectors()]
['zscore', 'seasonalMad', 'holtWinters', 'quantile', 'ensemble', 'levelNovelty']
"""

from __future__ import annotations

from obslab.ml.baselining.ensemble import Ensemble, EnsembleBaseline, median_band
from obslab.ml.baselining.holt_winters import HoltWinters, HoltWintersBaseline
from obslab.ml.baselining.novelty import LevelNovelty
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
    "LevelNovelty",
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
    """The four algorithms, the ensemble, then the streaming detectors, always in this order."""
    return (*ALGORITHMS, ensemble(), LevelNovelty())


def names() -> tuple[str, ...]:
    return tuple(detector.name for detector in all_detectors())


def by_name(name: str) -> BaselineAlgorithm:
    """The default detector called ``name``; ValueError listing the known names otherwise."""
    for detector in all_detectors():
        if detector.name == name:
            return detector
    raise ValueError(f"unknown baselining algorithm {name!r}; choose one of: {', '.join(names())}")
