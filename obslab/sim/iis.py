"""The IIS estate as a seeded, vectorised model: per-step counts for every series.

Figures from the seed notes' metric generation: base load 100 req/s for the whole
estate (split over the sites by :data:`obslab.conventions.IIS_SITES`), 2-2.5x in business hours
(:mod:`obslab.sim.seasonality`), 0.1 % of requests answered 5xx, 0.4 % 404, execution time
Gaussian(50 ms, 20 ms). The rest are choices the seeds leave open, kept in :class:`Figures`.

One call simulates many steps at once (a day of history, or the steps since the last scrape);
each quantity is drawn from its own random stream (:class:`obslab.sim.sampling.Streams`), so the
counts of a step depend only on the seed, the step's time and the faults, never on batching.

>>> import numpy as np
>>> model = IisModel(seed=1, step_seconds=60)
>>> batch = model.simulate(np.array([1_795_000_000.0, 1_795_000_060.0]))
>>> batch.requests.shape   # steps x sites x methods
(2, 3, 4)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np

from obslab import conventions as c
from obslab.faults.model import Fault
from obslab.sim import seasonality
from obslab.sim.sampling import Streams, fixed_value_bucket, normal_buckets

K = c.FaultKind

# Share of each site's requests per HTTP method (a banking front end: mostly reads).
IIS_METHOD_MIX: dict[str, float] = {"GET": 0.72, "POST": 0.22, "PUT": 0.04, "DELETE": 0.02}
# .NET exception types thrown in normal operation, with their share of the exceptions.
NETFRAMEWORK_EXCEPTION_MIX: dict[str, float] = {
    "System.NullReferenceException": 0.30,
    "System.Data.SqlClient.SqlException": 0.25,
    "System.TimeoutException": 0.20,
    "System.InvalidOperationException": 0.15,
    "System.ArgumentException": 0.10,
}

METHODS: tuple[str, ...] = tuple(IIS_METHOD_MIX)
METHOD_SHARES = np.array(list(IIS_METHOD_MIX.values()))
EXCEPTION_TYPES: tuple[str, ...] = tuple(NETFRAMEWORK_EXCEPTION_MIX)
EXCEPTION_SHARES = np.array(list(NETFRAMEWORK_EXCEPTION_MIX.values()))
STORM_TYPE_INDEX = EXCEPTION_TYPES.index(c.NETFRAMEWORK_STORM_EXCEPTION)
ERROR_CODES: tuple[str, ...] = c.IIS_CUSTOM_ERROR_CODES
BUCKETS = np.array(c.IIS_EXECUTION_TIME_BUCKETS)


@dataclass(frozen=True)
class Figures:
    """How the estate behaves; the first five are the seed figures."""

    base_rps: float = 100.0             # whole estate, outside business hours
    server_error_share: float = 0.001   # 5xx
    not_found_share: float = 0.004      # 404 (the only 4xx the mock serves)
    exec_mean_s: float = 0.050
    exec_sd_s: float = 0.020
    # A Gaussian draw below this is reported as a 1 ms response: execution time is never negative.
    exec_floor_s: float = 0.001
    # Handled .NET exceptions per served request; every 500 adds one unhandled exception.
    exception_share: float = 0.002
    # Idle seconds a browser keeps its connection open after a response (HTTP keep-alive):
    # with Little's law, open connections = arrival rate x (execution time + keep-alive).
    keepalive_s: float = 1.5
    # A stopped pool: HTTP.sys answers 503 itself, at once, and closes the connection.
    crash_refused_share: float = 0.995
    refusal_s: float = 0.002


@dataclass
class Effects:
    """What active faults do to each site at each step: arrays of shape (steps, sites)."""

    load: np.ndarray          # multiplier of the arrival rate (volume_surge)
    error_pct: np.ndarray     # extra % of requests answered 500 (error_rate)
    latency_s: np.ndarray     # added execution time (latency)
    jitter_s: np.ndarray      # sd added to the execution time (latency's jitter_ms)
    crashed: np.ndarray       # the site's app pool is stopped (app_pool_crash)
    storm_eps: np.ndarray     # extra .NET exceptions per second (exception_storm)

    @classmethod
    def none(cls, steps: int, sites: int) -> Effects:
        shape = (steps, sites)
        return cls(np.ones(shape), np.zeros(shape), np.zeros(shape), np.zeros(shape),
                   np.zeros(shape, dtype=bool), np.zeros(shape))

    @classmethod
    def from_faults(cls, faults: Iterable[Fault], steps: int, *,
                    sites: Sequence[c.IisSite] = c.IIS_SITES,
                    timestamps: np.ndarray | None = None) -> Effects:
        """Effects of ``faults``; with ``timestamps`` a fault applies only to the steps ending
        inside ``[created_at, expires_at)``, without them to every step (the live exporter
        passes the faults active now)."""
        effects = cls.none(steps, len(sites))
        for fault in sorted(faults, key=lambda f: f.created_at):
            column = _site_index(fault, sites)
            if column is None:
                continue
            if timestamps is None:
                when = np.ones(steps, dtype=bool)
            else:
                end = np.inf if fault.expires_at is None else fault.expires_at
                when = (timestamps >= fault.created_at) & (timestamps < end)
            rows = np.nonzero(when)[0]
            if fault.kind == K.VOLUME_SURGE:
                effects.load[rows, column] *= float(fault.param("factor", 1.0))
            elif fault.kind == K.ERROR_RATE:
                effects.error_pct[rows, column] = float(fault.param("rate", 0.0))
            elif fault.kind == K.LATENCY:
                effects.latency_s[rows, column] = fault.param("latency_ms", 0) / 1000.0
                effects.jitter_s[rows, column] = fault.param("jitter_ms", 0) / 1000.0
            elif fault.kind == K.APP_POOL_CRASH:
                effects.crashed[rows, column] = True
            elif fault.kind == K.EXCEPTION_STORM:
                effects.storm_eps[rows, column] += float(fault.param("rate", 0.0))
        return effects


def _site_index(fault: Fault, sites: Sequence[c.IisSite]) -> int | None:
    """Which site a fault hits: faults name a site, an app pool or an application."""
    attribute = {K.APP_POOL_CRASH: "app_pool", K.EXCEPTION_STORM: "app_name"}.get(fault.kind, "site")
    if fault.kind not in (K.VOLUME_SURGE, K.ERROR_RATE, K.LATENCY, K.APP_POOL_CRASH, K.EXCEPTION_STORM):
        return None
    for index, site in enumerate(sites):
        if getattr(site, attribute) == fault.target:
            return index
    return None


@dataclass
class Batch:
    """Per-step increments of the counters and values of the gauges, for ``steps`` steps.

    Axes: step, site, then the series' own label (method, bucket, exception type, error code).
    """

    timestamps: np.ndarray      # (T,) end of each step, Unix seconds
    requests: np.ndarray        # (T, S, methods)
    server_errors: np.ndarray   # (T, S)
    client_errors: np.ndarray   # (T, S)
    buckets: np.ndarray         # (T, S, len(BUCKETS) + 1), the last one above the top bound
    exec_sum: np.ndarray        # (T, S) seconds
    connections: np.ndarray     # (T, S) gauge, at the end of the step
    pool_state: np.ndarray      # (T, S) gauge
    exceptions: np.ndarray      # (T, S, exception types)
    custom_errors: np.ndarray   # (T, S, error codes)

    @property
    def steps(self) -> int:
        return len(self.timestamps)

    @classmethod
    def concatenate(cls, batches: Sequence[Batch]) -> Batch:
        return cls(**{f.name: np.concatenate([getattr(b, f.name) for b in batches])
                      for f in fields(cls)})


class IisModel:
    """The IIS estate: ``simulate(timestamps)`` -> a :class:`Batch` of per-step counts.

    Consecutive calls continue the random streams, so simulating a day in one call or in
    1440 calls of one step gives the same counts.
    """

    def __init__(self, seed: int, step_seconds: float, *, sites: Sequence[c.IisSite] = c.IIS_SITES,
                 figures: Figures = Figures()) -> None:
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds}")
        self.seed = seed
        self.step = float(step_seconds)
        self.sites = tuple(sites)
        self.figures = figures
        self.shares = np.array([s.share for s in self.sites])
        self.streams = Streams(seed, "iis")
        self._refused_bucket = fixed_value_bucket(BUCKETS, figures.refusal_s)

    def expected_rps(self, timestamps: np.ndarray) -> np.ndarray:
        """Mean arrival rate per site (T, S) without faults: base load x seasonality x share."""
        ts = np.asarray(timestamps, dtype=float)
        # The load of a step is the load in its middle.
        level = seasonality.multiplier(ts - self.step / 2)
        return self.figures.base_rps * level[:, None] * self.shares[None, :]

    def simulate(self, timestamps: np.ndarray, effects: Effects | None = None) -> Batch:
        ts = np.asarray(timestamps, dtype=float)
        steps, n_sites = len(ts), len(self.sites)
        fx = effects or Effects.none(steps, n_sites)
        f, s, step = self.figures, self.streams, self.step

        arrivals = s.poisson("requests", self.expected_rps(ts) * fx.load * step)
        refused = np.where(fx.crashed, s.binomial("refused", arrivals, f.crash_refused_share), 0)
        served = arrivals - refused
        p_500 = 1.0 - (1.0 - f.server_error_share) * (1.0 - fx.error_pct / 100.0)
        app_errors = s.binomial("app_errors", served, p_500)
        not_found = s.binomial("not_found", served - app_errors, f.not_found_share)

        mean = f.exec_mean_s + fx.latency_s
        sd = np.sqrt(f.exec_sd_s ** 2 + fx.jitter_s ** 2)
        shares, means = normal_buckets(BUCKETS, mean, sd, f.exec_floor_s)
        buckets = s.split("execution_time", served, shares)
        # The per-bucket means make the _sum agree with the buckets (mean from sum/count).
        exec_sum = (buckets * means).sum(axis=-1) + refused * f.refusal_s
        buckets[..., self._refused_bucket] += refused

        # Little's law: open connections = arrivals per second x time each one stays open.
        held = (served * (mean + f.keepalive_s) + refused * f.refusal_s) / step
        connections = s.poisson("connections", held)

        handled = s.poisson("exceptions", served * f.exception_share) + app_errors
        exceptions = s.split("exception_type", handled, EXCEPTION_SHARES)
        exceptions[..., STORM_TYPE_INDEX] += s.poisson("storm", fx.storm_eps * step)

        by_code = {c.IIS_CUSTOM_ERROR_NOT_FOUND: not_found, c.IIS_CUSTOM_ERROR_APPLICATION: app_errors,
                   c.IIS_CUSTOM_ERROR_UNAVAILABLE: refused}
        custom = np.stack([by_code[code] for code in ERROR_CODES], axis=-1)
        return Batch(
            timestamps=ts,
            requests=s.split("method", arrivals, METHOD_SHARES),
            server_errors=app_errors + refused,
            client_errors=not_found,
            buckets=buckets,
            exec_sum=exec_sum,
            connections=connections,
            pool_state=np.where(fx.crashed, c.IIS_APP_POOL_STOPPED, c.IIS_APP_POOL_RUNNING),
            exceptions=exceptions,
            custom_errors=custom,
        )
