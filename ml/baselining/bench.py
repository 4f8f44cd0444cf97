"""Speed and memory of the baselining algorithms on a realistic batch (default: the baseliner's
worst case, 1,000 series x one day at a 15 s step).

The synthetic batch mixes what the baseliner sees: request rates with a daily shape and
Gaussian noise, count-like series (Poisson, many zeros), latency-like series (log-normal, right
skewed) and error ratios, with a few spikes per series, level shifts in some, NaN gaps in some.

Each algorithm is timed twice, as the baseliner and the NAB benchmark use it: ``fit`` on the
whole history plus ``bands`` for the next refit cycle (5 minutes), and ``causal`` over the whole
history. The ensemble is timed both ways: ``combine`` over the members' results already computed
(what a service publishing all of them pays on top) and end to end (it runs every member
again). Peak memory is the growth of the process's peak resident set size (``ru_maxrss`` from
``resource.getrusage``) over the measurement; in a process that had already peaked higher it
reads low, so run it in a fresh process for a clean figure.

Importing this module costs numpy only; the algorithms are imported when ``measure`` runs.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Callable

import numpy as np

START = 1704067200.0        # 2024-01-01T00:00:00Z: slots and days start at midnight UTC
REFIT_CYCLE_S = 300.0


def synthetic_series(n_series: int, n_points: int, step_s: float,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(values, timestamps)`` of a mixed batch; see the module docstring for its contents."""
    if n_series < 1 or n_points < 2 or step_s <= 0:
        raise ValueError(f"need n_series >= 1, n_points >= 2 and step_s > 0, "
                         f"got {n_series}, {n_points}, {step_s}")
    rng = np.random.default_rng(seed)
    timestamps = START + np.arange(n_points) * float(step_s)
    hour = (timestamps % 86400.0) / 3600.0
    # A daily shape: quiet at night, peak mid-afternoon, each series with its own phase and depth.
    phase = rng.normal(0.0, 1.5, size=(n_series, 1))
    depth = rng.uniform(0.2, 0.7, size=(n_series, 1))
    shape = 1.0 + depth * np.sin(2 * np.pi * (hour[None, :] - 9.0 - phase) / 24.0)

    kind = rng.choice(4, size=n_series, p=[0.4, 0.2, 0.25, 0.15])
    level = np.exp(rng.uniform(np.log(5.0), np.log(2000.0), size=(n_series, 1)))
    values = np.empty((n_series, n_points))
    rate, count, latency, ratio = (kind == i for i in range(4))
    values[rate] = (level[rate] * shape[rate]
                    * (1.0 + rng.normal(0.0, 0.05, size=(rate.sum(), n_points))))
    mean_count = rng.uniform(0.1, 20.0, size=(count.sum(), 1)) * shape[count]
    values[count] = rng.poisson(mean_count)
    median_latency = rng.uniform(0.02, 0.5, size=(latency.sum(), 1)) * (0.7 + 0.3 * shape[latency])
    spread = rng.uniform(0.2, 0.6, size=(latency.sum(), 1))
    values[latency] = median_latency * np.exp(
        spread * rng.standard_normal((latency.sum(), n_points)))
    base_ratio = rng.uniform(0.001, 0.05, size=(ratio.sum(), 1))
    values[ratio] = np.clip(
        base_ratio * (1.0 + rng.normal(0.0, 0.3, (ratio.sum(), n_points))), 0.0, 1.0)

    # Level shifts in a fifth of the series, from a random point on, up or down.
    shifted = rng.random(n_series) < 0.2
    shift_at = rng.integers(n_points // 4, n_points, size=n_series)
    factor = np.where(rng.random(n_series) < 0.5, 1.6, 0.6)
    after = np.arange(n_points)[None, :] >= shift_at[:, None]
    values = np.where(shifted[:, None] & after, values * factor[:, None], values)

    # Three spikes per series, 6-10 robust sigmas above its typical value.
    rows = np.repeat(np.arange(n_series), 3)
    columns = rng.integers(0, n_points, size=rows.size)
    typical = np.nanmedian(values, axis=1)
    noise = 1.4826 * np.nanmedian(np.abs(values - typical[:, None]), axis=1) + 1e-3 * typical + 1.0
    values[rows, columns] += rng.uniform(6.0, 10.0, size=rows.size) * noise[rows]

    # Scrape gaps (NaN) in a tenth of the series: one to three gaps of up to an hour.
    gappy = np.flatnonzero(rng.random(n_series) < 0.1)
    max_gap = max(1, int(3600.0 / step_s))
    for series in gappy:   # a few dozen short slices, not a per-point loop
        for _ in range(rng.integers(1, 4)):
            start = rng.integers(0, n_points)
            values[series, start:start + rng.integers(1, max_gap + 1)] = np.nan
    return values, timestamps


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


class _Clock:
    """Wall and CPU seconds of a block: on a shared machine the wall time says how long it
    took, the CPU time what it cost (both threads of the process counted)."""

    def __enter__(self) -> _Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def measure(n_series: int = 1000, n_points: int = 5760, step_s: float = 15.0, seed: int = 0,
            progress: Callable[[str], None] | None = None) -> dict:
    """Time every algorithm and the ensemble on a synthetic batch; figures in a dict.

    Keys: ``n_series``, ``n_points``, ``step_s``, ``input_mib``; ``algorithms``, per name:
    ``fit_s`` (fit plus the bands of the next 5 minutes), ``causal_s``, the same as CPU seconds
    (``fit_cpu_s``, ``causal_cpu_s``) and ``flagged_share`` (share of points scored > 0.5); the
    ensemble's figures are end to end (it runs its members again), with ``combine_fit_s`` and
    ``combine_causal_s`` for the combination alone. Then ``refit_cycle_s`` (every algorithm's
    fit plus the ensemble's combine: what one baseliner refit costs), ``total_s`` and
    ``total_cpu_s`` (everything measured) and ``peak_rss_growth_mib_getrusage``.

    >>> figures = measure(n_series=5, n_points=300)
    >>> sorted(figures["algorithms"])
    ['ensemble', 'holtWinters', 'levelNovelty', 'quantile', 'seasonalMad', 'zscore']
    """
    from obslab.ml.baselining import ALGORITHMS, LevelNovelty, ensemble
    from obslab.ml.baselining.ensemble import median_band

    say = progress or (lambda message: None)
    values, timestamps = synthetic_series(n_series, n_points, step_s, seed)
    refit_points = max(1, int(round(REFIT_CYCLE_S / step_s)))
    upcoming = timestamps[-1] + step_s * np.arange(1, refit_points + 1)
    say(f"baselining bench: {n_series} series x {n_points} points at {step_s:g} s "
        f"({values.nbytes / 2**20:.0f} MiB of input)")

    peak_before = _peak_rss_mib()
    figures: dict[str, dict[str, float]] = {}
    causal_results, forecasts = [], []
    with _Clock() as everything:
        for algorithm in ALGORITHMS:
            with _Clock() as fit:
                forecasts.append(algorithm.fit(values, timestamps).bands(upcoming))
            with _Clock() as causal:
                bands = algorithm.causal(values, timestamps)
            causal_results.append(bands)
            figures[algorithm.name] = _figures(fit, causal, bands)
            say(_line(algorithm.name, fit, causal))

        combined = ensemble()
        with _Clock() as combine_fit:
            median_band(forecasts, combined.min_members)
        with _Clock() as combine_causal:
            combined.combine(causal_results, values)
        del causal_results, bands   # the end-to-end run below should not be charged for these
        with _Clock() as fit:
            combined.fit(values, timestamps).bands(upcoming)
        with _Clock() as causal:
            bands = combined.causal(values, timestamps)
        figures[combined.name] = {**_figures(fit, causal, bands),
                                  "combine_fit_s": combine_fit.wall,
                                  "combine_causal_s": combine_causal.wall}
        say(_line(combined.name, fit, causal)
            + f"   (combine only: {combine_fit.wall:.2f} s / {combine_causal.wall:.2f} s)")
        streaming = LevelNovelty()
        with _Clock() as fit:
            streaming.fit(values, timestamps).bands(upcoming)
        with _Clock() as causal:
            bands = streaming.causal(values, timestamps)
        figures[streaming.name] = _figures(fit, causal, bands)
        say(_line(streaming.name, fit, causal))
    refit_cycle_s = sum(figures[a.name]["fit_s"] for a in ALGORITHMS) + combine_fit.wall
    peak_growth = max(0.0, _peak_rss_mib() - peak_before)
    say(f"  total {everything.wall:.1f} s wall ({everything.cpu:.1f} s CPU), one refit "
        f"{refit_cycle_s:.2f} s, peak RSS growth {peak_growth:.0f} MiB")
    return {"n_series": n_series, "n_points": n_points, "step_s": float(step_s),
            "input_mib": values.nbytes / 2**20, "algorithms": figures,
            "refit_cycle_s": refit_cycle_s, "total_s": everything.wall,
            "total_cpu_s": everything.cpu, "peak_rss_growth_mib_getrusage": peak_growth}


def _figures(fit: _Clock, causal: _Clock, bands) -> dict[str, float]:
    return {"fit_s": fit.wall, "causal_s": causal.wall, "fit_cpu_s": fit.cpu,
            "causal_cpu_s": causal.cpu, "flagged_share": float(np.mean(bands.score > 0.5))}


def _line(name: str, fit: _Clock, causal: _Clock) -> str:
    return (f"  {name:<13} fit+bands {fit.wall:6.2f} s ({fit.cpu:5.2f} CPU)   "
            f"causal {causal.wall:6.2f} s ({causal.cpu:5.2f} CPU)")


if __name__ == "__main__":
    measure(progress=print)
