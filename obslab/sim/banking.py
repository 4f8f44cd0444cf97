"""History of the banking services' metrics: money movements and the gateway's RED metrics.

Generates what the live services expose, under the job that exposes it:

- ``transactions`` (transfers) and ``payments``: the seed ``transaction_*`` metrics, labelled as
  :mod:`obslab.services.common.movement` labels them (``status`` completed/rejected/declined/
  failed, ``error_code`` of the refusal or failure);
- ``gateway``: ``http_server_requests_total`` and ``http_server_request_duration_seconds`` per
  public route, with the status codes the gateway answers.

Load follows :mod:`obslab.sim.seasonality`. Faults change it as they do live: a slow dependency of
every movement (``latency`` on fraud or accounts) slows both movement types and their gateway
routes; one that is down (``unavailable``) fails them fast with 503 ``dependency_unavailable``
(the caller's circuit breaker opens).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from obslab import conventions as c
from obslab.conventions import TransactionStatus as Status
from obslab.conventions import TransactionType
from obslab.faults.model import Fault
from obslab.sim import seasonality
from obslab.sim.sampling import Streams, fixed_value_bucket, lognormal_buckets, lognormal_share_above
from obslab.sim.series import Series, counter, gauge, histogram

K = c.FaultKind
BOUNDS = np.array(c.LATENCY_BUCKETS)

# Requests per second through the gateway at base load (seasonality multiplies it).
GATEWAY_BASE_RPS = 5.0
GATEWAY_OVERHEAD_S = 0.008          # auth check, rate limit, audit row on top of the service
LATENCY_SIGMA = 0.45                # log-normal shape of every latency here
FAST_FAILURE_S = 0.004              # a call refused by an open circuit breaker
# Peers every money movement calls inside its timed section: their faults reach the metrics.
MOVEMENT_DEPENDENCIES = (c.FRAUD, c.ACCOUNTS)
DEPENDENCY_UNAVAILABLE = "dependency_unavailable"


@dataclass(frozen=True)
class Movement:
    """One money movement type: which service records it, through which gateway route."""

    type: TransactionType
    job: str
    route: str
    share: float                                   # of the gateway's requests
    median_s: float
    outcomes: Mapping[tuple[Status, str | None], float]


@dataclass(frozen=True)
class Route:
    """A gateway route that moves no money."""

    method: str
    route: str
    share: float
    median_s: float
    codes: Mapping[str, float]


MOVEMENTS: tuple[Movement, ...] = (
    Movement(TransactionType.TRANSFER, c.TRANSACTIONS, f"{c.API_PREFIX}/transfers", 0.20, 0.045, {
        (Status.COMPLETED, None): 0.945,
        (Status.REJECTED, "insufficient_funds"): 0.032,
        (Status.REJECTED, "risk_rejected"): 0.022,
        (Status.FAILED, DEPENDENCY_UNAVAILABLE): 0.001,
    }),
    Movement(TransactionType.PAYMENT, c.PAYMENTS, f"{c.API_PREFIX}/payments", 0.14, 0.210, {
        (Status.COMPLETED, None): 0.92,
        (Status.DECLINED, "payment_declined"): 0.02,     # the card processor's 2 % declines
        (Status.REJECTED, "insufficient_funds"): 0.03,
        (Status.REJECTED, "risk_rejected"): 0.029,
        (Status.FAILED, DEPENDENCY_UNAVAILABLE): 0.001,
    }),
)
ROUTES: tuple[Route, ...] = (
    Route("POST", f"{c.API_PREFIX}/auth/login", 0.14, 0.060, {"200": 0.985, "401": 0.015}),
    Route("GET", f"{c.API_PREFIX}/accounts", 0.30, 0.012, {"200": 1.0}),
    Route("GET", f"{c.API_PREFIX}/accounts/<account_id>", 0.10, 0.010, {"200": 0.995, "404": 0.005}),
    Route("GET", f"{c.API_PREFIX}/transfers", 0.12, 0.018, {"200": 1.0}),
)
# The gateway's edge gauges (services/gateway/edge.py) as the load generator's customers make
# them: 200 customers, some with a second address (phone), each active for a few requests.
CUSTOMER_ADDRESSES = 260
REQUESTS_PER_ACTIVE_CLIENT = 3.0     # a customer's requests within one minute, on average
BUSIEST_CLIENT_REQUESTS = 30.0       # the busiest customer address's requests per minute
CLIENT_WINDOW_S = 60.0

# The status the gateway answers for each movement outcome.
GATEWAY_CODE = {Status.COMPLETED: "201", Status.REJECTED: "422", Status.DECLINED: "422", Status.FAILED: "503"}


@dataclass(frozen=True)
class Target:
    """The labels the scrape adds: job, instance, tier (see obslab/generators/promconfig.py)."""

    job: str
    instance: str
    tier: str

    def labels(self) -> dict[str, str]:
        return {"job": self.job, "instance": self.instance, "tier": self.tier}


class BankingModel:
    def __init__(self, seed: int, step_seconds: float, targets: Mapping[str, Target]) -> None:
        self.step = float(step_seconds)
        self.targets = targets
        self.streams = Streams(seed, "banking")
        self._fast_bucket = fixed_value_bucket(BOUNDS, FAST_FAILURE_S)

    def series(self, timestamps: np.ndarray, faults: Iterable[Fault] = ()) -> list[Series]:
        """Per-step series (increments) of every banking sample for steps ending at ``timestamps``."""
        ts = np.asarray(timestamps, dtype=float)
        s, step = self.streams, self.step
        rps = GATEWAY_BASE_RPS * seasonality.multiplier(ts - step / 2)
        slow_by, down = _dependency_effects(list(faults), ts)
        gateway = self.targets[c.GATEWAY].labels()
        out: list[Series] = []

        for route in ROUTES:
            name = f"{route.method} {route.route}"
            n = s.poisson(f"{name}/requests", rps * route.share * step)
            codes = s.split(f"{name}/codes", n, np.array(list(route.codes.values())))
            for i, code in enumerate(route.codes):
                out.append(counter(c.HTTP_SERVER_REQUESTS, (c.GATEWAY, route.method, route.route, code),
                                   codes[:, i], gateway))
            shares, means = lognormal_buckets(BOUNDS, np.full(len(ts), route.median_s + GATEWAY_OVERHEAD_S),
                                              LATENCY_SIGMA)
            buckets = s.split(f"{name}/latency", n, shares)
            out += histogram(c.HTTP_SERVER_DURATION, (c.GATEWAY, route.method, route.route), buckets,
                             (buckets * means).sum(-1), gateway)

        out += self._edge(rps, gateway)
        for movement in MOVEMENTS:
            kind = movement.type.value
            job = self.targets[movement.job].labels()
            n = s.poisson(f"{kind}/requests", rps * movement.share * step)
            # A dependency that is down fails the movement before any business rule runs.
            failed_fast = s.binomial(f"{kind}/failed_fast", n, down)
            outcomes = s.split(f"{kind}/outcomes", n - failed_fast, np.array(list(movement.outcomes.values())))
            medians = np.full(len(ts), movement.median_s)
            shares, means = lognormal_buckets(BOUNDS, medians, LATENCY_SIGMA, slow_by)
            buckets = s.split(f"{kind}/latency", n - failed_fast, shares)
            sums = (buckets * means).sum(-1) + failed_fast * FAST_FAILURE_S
            buckets[:, self._fast_bucket] += failed_fast
            by_status: dict[Status, np.ndarray] = {}
            for i, (status, error_code) in enumerate(movement.outcomes):
                count = outcomes[:, i] + (failed_fast if error_code == DEPENDENCY_UNAVAILABLE else 0)
                by_status[status] = by_status.get(status, 0) + count
                if error_code is not None:
                    out.append(counter(c.TRANSACTION_FAILURES, (kind, error_code), count, job))
            for status, count in by_status.items():
                out.append(counter(c.TRANSACTION_REQUESTS, (kind, status.value), count, job))
            out += histogram(c.TRANSACTION_DURATION, (kind,), buckets, sums, job)
            out += self._slow(kind, buckets, movement.median_s, slow_by, job)

            by_code: dict[str, np.ndarray] = {}
            for status, count in by_status.items():
                by_code[GATEWAY_CODE[status]] = by_code.get(GATEWAY_CODE[status], 0) + count
            for code, count in by_code.items():
                out.append(counter(c.HTTP_SERVER_REQUESTS, (c.GATEWAY, "POST", movement.route, code), count, gateway))
            g_shares, g_means = lognormal_buckets(BOUNDS, medians + GATEWAY_OVERHEAD_S, LATENCY_SIGMA, slow_by)
            g_buckets = s.split(f"{kind}/gateway_latency", n - failed_fast, g_shares)
            g_sums = (g_buckets * g_means).sum(-1) + failed_fast * (FAST_FAILURE_S + GATEWAY_OVERHEAD_S)
            g_buckets[:, fixed_value_bucket(BOUNDS, FAST_FAILURE_S + GATEWAY_OVERHEAD_S)] += failed_fast
            out += histogram(c.HTTP_SERVER_DURATION, (c.GATEWAY, "POST", movement.route), g_buckets, g_sums, gateway)
        return out

    def _edge(self, rps: np.ndarray, gateway: dict[str, str]) -> list[Series]:
        """Distinct clients of the last minute, the busiest one's share, requests in flight and
        (no flood in history) nothing rate limited: what the DDoS detector learns normal from."""
        s = self.streams
        per_minute = rps * CLIENT_WINDOW_S
        clients = CUSTOMER_ADDRESSES * (1 - np.exp(-per_minute / (CUSTOMER_ADDRESSES * REQUESTS_PER_ACTIVE_CLIENT)))
        clients = np.round(clients * s("edge/clients").lognormal(0.0, 0.05, len(rps)))
        top = np.clip(BUSIEST_CLIENT_REQUESTS * s("edge/top").lognormal(0.0, 0.3, len(rps)) / per_minute, 0, 1)
        in_flight = s.poisson("edge/in_flight", rps * (GATEWAY_OVERHEAD_S + 0.05))
        return [
            gauge(c.GATEWAY_ACTIVE_CLIENTS, (), clients, gateway),
            gauge(c.GATEWAY_TOP_CLIENT_SHARE, (), top, gateway),
            gauge(c.HTTP_SERVER_IN_FLIGHT, (c.GATEWAY,), in_flight, gateway),
            counter(c.GATEWAY_RATE_LIMITED, (), np.zeros(len(rps)), gateway),
        ]

    def _slow(self, kind: str, buckets: np.ndarray, median: float, slow_by: np.ndarray,
              job: dict[str, str]) -> list[Series]:
        """slow_transactions_total from the same draws as the histogram: a movement slower than
        a threshold is in a bucket above it, or in the part above it of the bucket it splits."""
        out = []
        edges = np.concatenate([[0.0], BOUNDS, [np.inf]])
        for label, threshold in c.SLOW_TRANSACTION_THRESHOLDS.items():
            inside = int(np.searchsorted(BOUNDS, threshold, side="left"))   # the bucket holding it
            above = buckets[:, inside + 1:].sum(-1)
            if edges[inside + 1] != threshold:
                share = lognormal_share_above(threshold, edges[inside], edges[inside + 1],
                                              np.full(len(slow_by), median), LATENCY_SIGMA, slow_by)
                above = above + self.streams.binomial(f"{kind}/slow/{label}", buckets[:, inside], share)
            out.append(counter(c.SLOW_TRANSACTIONS, (label, kind), above, job))
        return out


def _dependency_effects(faults: list[Fault], ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Added latency (s) and share of movements failed fast, per step, from dependency faults."""
    slow_by = np.zeros(len(ts))
    down = np.zeros(len(ts))
    for fault in faults:
        if fault.target not in MOVEMENT_DEPENDENCIES:
            continue
        end = np.inf if fault.expires_at is None else fault.expires_at
        when = (ts >= fault.created_at) & (ts < end)
        if fault.kind == K.LATENCY:
            slow_by[when] += fault.param("latency_ms", 0) / 1000.0
        elif fault.kind == K.UNAVAILABLE:
            down[when] = 1.0
    return slow_by, down
