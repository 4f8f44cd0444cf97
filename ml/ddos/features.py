"""The DDoS detector's features, engineered in real time from the gateway's metrics.

Raw *signals* are PromQL over the gateway's own metrics (request rate, distinct clients, the
busiest client's share, 401/403, 429 and 5xx rates, p95 latency, requests in flight; and, when
the rate window is shorter than the gateway's one-minute client count, the request rate over
that minute, for requests per client). Each
volume-like signal also has a *baseline*: its median over the previous ``baseline`` window,
``lag`` ago, computed by Prometheus with a subquery, so the live detector and the training
set (range queries over the same expressions) see exactly the same numbers.

Features are ratios and shares, chosen so that a legitimate change of demand moves them little
and together: more customers mean more requests *and* more distinct clients at about the same
requests per client, the same share of failed logins and no rate limiting. A flood breaks
that: far more requests per client (few bots) or an explosion of clients; failed
authentication from tokenless or junk requests; clients hitting the rate limit; latency and
requests in flight climbing as the gateway saturates.

The ratio features are one-sided (log2 growth, 0 when not above the baseline): a flood only
ever adds. Less traffic, fewer clients or faster answers are not evidence of an attack (a lab
warming up, a quiet night), and other alerts own a drop in traffic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from obslab import conventions as c

GATEWAY = f'{c.L_SERVICE}="{c.GATEWAY}"'


# The gateway counts distinct clients over its last minute (services/gateway/edge.py).
CLIENT_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Windows:
    """PromQL ranges of one profile, in seconds: ``signal`` for rates, ``baseline`` (median over,
    ``lag`` ago, at ``resolution``)."""

    signal_s: int
    baseline_s: int
    lag_s: int
    resolution_s: int

    @property
    def signal(self) -> str:
        return f"{self.signal_s}s"

    @property
    def linger_s(self) -> int:
        """How long a flood's traces stay in the features after it stopped."""
        return max(self.signal_s, CLIENT_WINDOW_SECONDS) + self.lag_s


def _rate(selector: str, window: str) -> str:
    return f"sum(rate({selector}[{window}]))"


def signal_exprs(w: Windows) -> dict[str, str]:
    """Raw signals; an absent counter series (no 429 yet) is a zero, not a gap."""
    requests = f"{c.HTTP_SERVER_REQUESTS.name}{{{GATEWAY}}}"
    auth_failed = f'{c.HTTP_SERVER_REQUESTS.name}{{{GATEWAY},code=~"401|403"}}'
    server_failed = f'{c.HTTP_SERVER_REQUESTS.name}{{{GATEWAY},code=~"5.."}}'
    return {
        "requests": _rate(requests, w.signal),
        "auth_failures": f"({_rate(auth_failed, w.signal)} or vector(0))",
        "rate_limited": f"({_rate(c.GATEWAY_RATE_LIMITED.name, w.signal)} or vector(0))",
        "server_errors": f"({_rate(server_failed, w.signal)} or vector(0))",
        "clients": f"max(max_over_time({c.GATEWAY_ACTIVE_CLIENTS.name}[{w.signal}]))",
        "top_client_share": f"max(max_over_time({c.GATEWAY_TOP_CLIENT_SHARE.name}[{w.signal}]))",
        "latency_p95": f"histogram_quantile(0.95, sum by (le) "
                       f"(rate({c.HTTP_SERVER_DURATION.name}_bucket{{{GATEWAY}}}[{w.signal}])))",
        "in_flight": f"sum(avg_over_time({c.HTTP_SERVER_IN_FLIGHT.name}{{{GATEWAY}}}[{w.signal}]))",
        **({} if w.signal_s == CLIENT_WINDOW_SECONDS else
           {"client_window_requests": _rate(requests, f"{CLIENT_WINDOW_SECONDS}s")}),
    }


BASELINED = ("requests", "clients", "latency_p95", "in_flight", "client_window_requests")


def exprs(w: Windows) -> dict[str, str]:
    """Every expression a feature row needs: the signals and ``<name>_baseline`` for some."""
    signals = signal_exprs(w)
    baselines = {
        f"{name}_baseline": f"quantile_over_time(0.5, ({signals[name]})[{w.baseline_s}s:{w.resolution_s}s] offset {w.lag_s}s)"
        for name in BASELINED if name in signals
    }
    return {**signals, **baselines}


@dataclass(frozen=True)
class Feature:
    name: str
    meaning: str


FEATURES: tuple[Feature, ...] = (
    Feature("volume_ratio", "log2 growth of the request rate over its baseline (0 when not above)"),
    Feature("clients_ratio", "log2 growth of distinct clients over their baseline"),
    Feature("requests_per_client_ratio", "log2 growth of requests per client over the baseline's"),
    Feature("auth_failure_share", "share of requests answered 401/403"),
    Feature("rate_limited_share", "share of requests refused with 429 by the per-client limit"),
    Feature("server_error_share", "share of requests answered 5xx"),
    Feature("top_client_share", "share of the last minute's requests from the busiest client"),
    Feature("latency_ratio", "log2 growth of p95 latency over its baseline"),
    Feature("in_flight_ratio", "log2 growth of requests in flight over their baseline"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
# Below this many requests per second the shares are noise: the lab is idle, not attacked.
MIN_REQUESTS_PER_SECOND = 0.05
# Shares are smoothed as if this many more requests per second had succeeded: one failed login
# among a quiet window's few requests is not a 10 % failure share, while a flood's hundreds of
# requests per second leave its shares as they are (additive smoothing).
SHARE_PSEUDO_RATE = 1.0


def _growth(value: np.ndarray, base: np.ndarray, floor: float) -> np.ndarray:
    return np.maximum(np.log2((value + floor) / (base + floor)), 0.0)


GROWTH_FEATURES = ("volume_ratio", "clients_ratio", "requests_per_client_ratio", "latency_ratio", "in_flight_ratio")


def feature_matrix(signals: Mapping[str, np.ndarray]) -> np.ndarray:
    """Rows of :data:`FEATURES` from arrays of signals (same length); NaN rows where an input is
    missing or there is no traffic to judge."""
    s = {k: np.asarray(v, dtype=float) for k, v in signals.items()}
    requests = s["requests"]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = lambda name: np.clip(s[name] / (requests + SHARE_PSEUDO_RATE), 0.0, 1.0)  # noqa: E731
        # Requests per client over the window the clients were counted in: with a shorter rate
        # window, every legitimate ramp looked like more requests per client for a minute (the
        # rate rose at once, the distinct clients of the last minute caught up slowly), which
        # took a 2x surge to 0.56 against a 0.57 threshold in a fast-profile lab.
        # Both or neither: a minute's rate over a 10-second baseline would be a made-up ratio.
        windowed = "client_window_requests" in s and "client_window_requests_baseline" in s
        window_requests = s["client_window_requests"] if windowed else requests
        window_base = s["client_window_requests_baseline"] if windowed else s["requests_baseline"]
        rpc = window_requests / np.maximum(s["clients"], 1.0)
        rpc_base = window_base / np.maximum(s["clients_baseline"], 1.0)
        columns = [
            _growth(requests, s["requests_baseline"], 0.05),
            _growth(s["clients"], s["clients_baseline"], 1.0),
            _growth(rpc, rpc_base, 0.01),
            share("auth_failures"),
            share("rate_limited"),
            share("server_errors"),
            np.clip(s["top_client_share"], 0.0, 1.0),
            _growth(s["latency_p95"], s["latency_p95_baseline"], 0.005),
            _growth(s["in_flight"], s["in_flight_baseline"], 1.0),
        ]
    matrix = np.column_stack(columns)
    matrix[~(requests >= MIN_REQUESTS_PER_SECOND)] = np.nan
    return matrix


def feature_row(signals: Mapping[str, float]) -> np.ndarray | None:
    """One live row, or None when it cannot be judged (a gap or no traffic)."""
    row = feature_matrix({k: np.array([v]) for k, v in signals.items()})[0]
    return None if any(math.isnan(x) for x in row) else row
