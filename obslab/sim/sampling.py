"""Seeded, vectorised sampling for simulated telemetry (the IIS mock and generated history).

Counts are drawn per step from their distributions (Poisson arrivals, binomial error shares,
multinomial histogram buckets), never one random draw per request, so weeks of history cost
seconds. Every quantity has its own named random stream: draws are taken in step order, so the
result for a step does not depend on how the steps were batched (one call for a day, or one per
scrape), only on the seed and the parameters.

>>> streams = Streams(7, "example")
>>> counts = streams.poisson("arrivals", np.full((4, 2), 100.0))
>>> counts.shape, bool((streams.split("by_kind", counts, np.array([0.5, 0.5])).sum(-1) == counts).all())
((4, 2), True)
"""

from __future__ import annotations

import math
import zlib

import numpy as np

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)
# Chebyshev fit of erfc (Numerical Recipes, "erfcc"): relative error below 1.2e-7 everywhere,
# vectorised (numpy has no erf), and far below any count a bucket share turns into.
_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
         1.48851587, -0.82215223, 0.17087277)


def _erfc(x: np.ndarray) -> np.ndarray:
    t = 1.0 / (1.0 + 0.5 * np.abs(x))
    poly = np.zeros_like(t)
    for coefficient in reversed(_ERFC[1:]):
        poly = t * (coefficient + poly)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        value = t * np.exp(-x * x + _ERFC[0] + poly)
    value = np.where(np.isfinite(x), value, 0.0)
    return np.where(x >= 0, value, 2.0 - value)


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """P(Z <= z) of a standard normal; exact at +-inf."""
    return 0.5 * _erfc(-np.asarray(z, dtype=float) / _SQRT2)


def normal_pdf(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    with np.errstate(over="ignore"):
        return np.where(np.isfinite(z), np.exp(-0.5 * np.square(np.where(np.isfinite(z), z, 0.0))), 0.0) / _SQRT2PI


class Streams:
    """Independent random streams, one per name, all derived from one seed."""

    def __init__(self, seed: int, namespace: str) -> None:
        self.seed = int(seed)
        self.namespace = namespace
        self._streams: dict[str, np.random.Generator] = {}

    def __call__(self, name: str) -> np.random.Generator:
        stream = self._streams.get(name)
        if stream is None:
            # crc32, not hash(): stable across processes, so equal seeds give equal series.
            key = zlib.crc32(f"{self.namespace}/{name}".encode())
            stream = self._streams[name] = np.random.default_rng([self.seed, key])
        return stream

    def poisson(self, name: str, lam: np.ndarray) -> np.ndarray:
        return self(name).poisson(np.maximum(np.asarray(lam, dtype=float), 0.0)).astype(np.int64)

    def binomial(self, name: str, n: np.ndarray, p: np.ndarray) -> np.ndarray:
        p = np.clip(np.nan_to_num(np.asarray(p, dtype=float)), 0.0, 1.0)
        return self(name).binomial(np.asarray(n, dtype=np.int64), p).astype(np.int64)

    def split(self, name: str, n: np.ndarray, shares: np.ndarray) -> np.ndarray:
        """Multinomial split of counts ``n`` over the last axis of ``shares`` (summing to 1).

        Drawn as conditional binomials, one stream per category, so that it vectorises over
        steps with step-varying shares (numpy's multinomial takes one share vector per call).
        """
        n = np.asarray(n, dtype=np.int64)
        shares = np.broadcast_to(np.asarray(shares, dtype=float), (*n.shape, np.shape(shares)[-1]))
        k = shares.shape[-1]
        out = np.zeros((*n.shape, k), dtype=np.int64)
        remaining = n.copy()
        left = np.ones(n.shape)
        for i in range(k - 1):
            with np.errstate(divide="ignore", invalid="ignore"):
                p = np.where(left > 1e-12, shares[..., i] / left, 0.0)
            out[..., i] = self.binomial(f"{name}.{i}", remaining, p)
            remaining -= out[..., i]
            left = left - shares[..., i]
        out[..., k - 1] = remaining
        return out


def normal_buckets(bounds: np.ndarray, mean: np.ndarray, sd: np.ndarray,
                   floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Bucket shares and mean value per bucket of ``max(floor, Normal(mean, sd))``.

    ``bounds`` are a histogram's upper bounds (all above ``floor``); the result has one more
    bucket, above the last bound. The per-bucket means turn bucket counts into a ``_sum`` that
    agrees with the buckets.
    """
    mean = np.asarray(mean, dtype=float)[..., None]
    sd = np.maximum(np.asarray(sd, dtype=float), 1e-9)[..., None]
    edges = np.concatenate([[floor], np.asarray(bounds, dtype=float), [np.inf]])
    z = (edges - mean) / sd
    cdf = normal_cdf(z)
    pdf = normal_pdf(z)
    probs = np.diff(cdf, axis=-1)
    partial = mean * probs - sd * np.diff(pdf, axis=-1)
    # Draws below the floor are reported as the floor; they land in the first bucket.
    probs[..., 0] += cdf[..., 0]
    partial[..., 0] += floor * cdf[..., 0]
    return probs, _means(partial, probs, edges)


def lognormal_buckets(bounds: np.ndarray, median: np.ndarray, sigma: float,
                      shift: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Bucket shares and mean value per bucket of ``shift + LogNormal(median, sigma)``.

    ``shift`` is a fixed delay on top of the usual latency (a slow dependency), which moves the
    distribution without widening it.
    """
    median = np.asarray(median, dtype=float)
    shift = np.broadcast_to(np.asarray(shift, dtype=float), median.shape)[..., None]
    mu = np.log(np.maximum(median, 1e-9))[..., None]
    edges = np.concatenate([[0.0], np.asarray(bounds, dtype=float), [np.inf]])
    with np.errstate(divide="ignore"):
        log_edges = np.log(np.maximum(edges - shift, 0.0))
    cdf = normal_cdf((log_edges - mu) / sigma)
    probs = np.diff(cdf, axis=-1)
    # E[X; a < X <= b] of a log-normal is exp(mu + sigma^2/2) times a difference of shifted CDFs.
    shifted = normal_cdf((log_edges - mu - sigma * sigma) / sigma)
    partial = np.exp(mu + sigma * sigma / 2) * np.diff(shifted, axis=-1) + shift * probs
    return probs, _means(partial, probs, edges)


def lognormal_share_above(threshold: float, lower: float, upper: float, median: np.ndarray, sigma: float,
                          shift: np.ndarray | float = 0.0) -> np.ndarray:
    """Share of ``shift + LogNormal(median, sigma)`` in ``(lower, upper]`` that is above ``threshold``."""
    median = np.asarray(median, dtype=float)

    def cdf(x: float) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return normal_cdf((np.log(np.maximum(x - shift, 0.0)) - np.log(median)) / sigma)

    lo, mid, hi = cdf(lower), cdf(threshold), cdf(upper)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hi - lo > 1e-15, (hi - mid) / (hi - lo), 0.0)


def _means(partial: np.ndarray, probs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of each bucket (partial expectation / share); a bucket no draw can reach gets its
    lower edge, which no count ever multiplies."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(probs > 1e-15, partial / np.where(probs > 1e-15, probs, 1.0), edges[:-1])


def fixed_value_bucket(bounds: np.ndarray, value: float) -> int:
    """Index of the bucket an observation of ``value`` falls into (le semantics)."""
    return int(np.searchsorted(np.asarray(bounds, dtype=float), value, side="left"))
