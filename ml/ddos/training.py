"""Training data for the DDoS model: this lab's normal traffic, widened by what normal can become.

Normal rows come from Prometheus range queries over a training window, the very expressions
the live detector evaluates (so the model sees the same numbers in training and in service);
rows while a flood ran (``loadgen_flood_requests_per_second > 0``) or with a gap are dropped.
That covers whatever the window held: live runs and, once the lab has it, generated history.

A training window never holds every legitimate situation, so two widenings encode domain
knowledge instead of hoping the window had them:

- *Demand changes* (business hours at 2-2.5x, a campaign, payday): more customers behaving as
  before. Copies of normal rows get their volume, client count and in-flight requests scaled
  together by a factor from 1/3 to 3.5; failure shares and requests per client stay as
  observed, the busiest client's share scales inversely and latency may grow (a gateway near
  its capacity answers customers more slowly too).
- A *prior* of normal rows drawn around the observed medians, so that a lab that ran for two
  minutes still yields a model that tolerates ordinary jitter and the occasional failed login
  it has not seen yet.
- *Backend incidents*: our own services failing or slowing down (5xx shares up to 100 %, p95
  and requests in flight up to 8x) while the customers are the same (failing fast, they send
  up to twice the requests). They are incidents, but not attacks: the SLO and service alerts
  own them, and a DDoS verdict there would be worse than useless, because
  DDoSAttackSuspected inhibits exactly those alerts.
- *Busy customers*: one client sending up to 60 % of the requests while staying under the
  per-client rate limit (a business customer's batch, a support tool, a test driver). A single
  client is not a *distributed* attack; a few noisy bots show as rate limiting, failed
  authentication and more volume, which these rows keep as observed.

Validation rows for comparing models: held-out normal rows (the last part of the window, never
trained on), legitimate surges made from them, and attacks: real flood rows from the window
when there were any, plus attack rows synthesised from normal ones (volume x1.5-x100; either a
few bots (requests per client up) or a wide botnet (clients up); failed authentication,
rate limiting, saturation). The mildest of those shapes anchor the score scale (see
:class:`obslab.ml.ddos.model.Calibration`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from obslab import conventions as c
from obslab.ml.ddos.features import FEATURE_NAMES, GROWTH_FEATURES, Windows, exprs, feature_matrix
from obslab.ml.prometheus import PrometheusClient

F = {name: i for i, name in enumerate(FEATURE_NAMES)}
GROWTH = [F[name] for name in GROWTH_FEATURES]
DEMAND_FACTORS = (1 / 3, 3.5)
AUGMENT_COPIES = 8
BACKEND_SLOWDOWN = 8.0
# Failures answered fast bring the same customers back sooner (retries, the next journey
# started early): live, every payment failing raised the gateway's requests x1.3-1.6 from
# the same clients. Up to this factor, with no new client.
RETRY_GROWTH = 2.0
BUSY_CLIENT_SHARE = 0.6
INCIDENT_SHARE = 0.35       # of the widened rows: during a backend incident
BUSY_SHARE = 0.3            # of the widened rows: with one busy customer
PRIOR_ROWS = 400
VALIDATION_SHARE = 0.25
MIN_NORMAL_ROWS = 20    # below this no model is trained, whatever the caller asks
FLOOD_ACTIVE = f"max({c.LOADGEN_FLOOD_RATE.name}) > bool 0"


class NotEnoughData(ValueError):
    """The training window held too few usable normal rows."""


@dataclass(frozen=True)
class Dataset:
    normal: np.ndarray       # live normal rows in time order
    floods: np.ndarray       # live rows while a flood ran
    start: float
    end: float
    step: float


def collect(prometheus: PrometheusClient, windows: Windows, *, start: float, end: float, step: float,
            linger_s: float = 0.0) -> Dataset:
    """Feature rows at every ``step`` of ``[start, end]`` from the lab's Prometheus; rows up to
    ``linger_s`` after a flood are neither normal nor flood (windowed signals still carry it)."""
    signals = {}
    for name, expr in exprs(windows).items():
        result = prometheus.range(expr, start, end, step)
        signals[name] = result.values[0] if len(result.values) else np.full(len(result.timestamps), np.nan)
    rows = feature_matrix(signals)
    flood = prometheus.range(FLOOD_ACTIVE, start, end, step)
    flooding = (flood.values[0] > 0) if len(flood.values) else np.zeros(len(rows), dtype=bool)
    after = int(np.ceil(linger_s / step))
    lingering = np.convolve(flooding.astype(float), np.ones(after + 1), mode="full")[:len(rows)] > 0
    usable = ~np.isnan(rows).any(axis=1)
    return Dataset(normal=rows[usable & ~lingering], floods=rows[usable & flooding], start=start, end=end, step=step)


def demand_changes(rows: np.ndarray, rng: np.random.Generator, copies: int = AUGMENT_COPIES) -> np.ndarray:
    """Copies of ``rows`` as if ``k`` times as many customers came (k from 1/3 to 3.5)."""
    if len(rows) == 0:
        return rows
    out = np.repeat(rows, copies, axis=0)
    shift = np.log2(rng.uniform(*DEMAND_FACTORS, size=len(out)))
    out[:, F["volume_ratio"]] += shift
    # Distinct clients grow a little less than volume (some customers come back twice).
    out[:, F["clients_ratio"]] += shift * rng.uniform(0.75, 1.05, size=len(out))
    out[:, F["requests_per_client_ratio"]] = out[:, F["volume_ratio"]] - out[:, F["clients_ratio"]]
    out[:, F["in_flight_ratio"]] += shift * rng.uniform(0.3, 1.0, size=len(out))
    # A gateway near its capacity answers everyone more slowly, customers included.
    out[:, F["latency_ratio"]] += np.maximum(shift, 0.0) * rng.uniform(0.0, 0.8, size=len(out))
    # The busiest customer's share thins out with more customers and stands out with fewer.
    out[:, F["top_client_share"]] = np.clip(out[:, F["top_client_share"]] / 2.0 ** shift, 0.0, 1.0)
    return _one_sided(out)


def backend_incidents(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rows`` as if a backend failed (5xx), slowed down, or both, with the same customers
    (who send more requests while failures come back fast)."""
    out = rows.copy()
    kind = rng.integers(0, 3, size=len(out))           # 0 failing, 1 slow, 2 both
    failing, slow = kind != 1, kind != 0
    out[:, F["server_error_share"]] = np.where(failing, rng.uniform(0.0, 1.0, len(out)), out[:, F["server_error_share"]])
    retries = np.where(failing, np.log2(rng.uniform(1.0, RETRY_GROWTH, len(out))), 0.0)
    out[:, F["volume_ratio"]] += retries
    out[:, F["requests_per_client_ratio"]] += retries
    slower = np.log2(rng.uniform(1.0, BACKEND_SLOWDOWN, len(out)))
    out[:, F["latency_ratio"]] += np.where(slow, slower, 0.0)
    # Slower answers hold more requests in flight (Little's law), up to the same factor.
    out[:, F["in_flight_ratio"]] += np.where(slow, slower * rng.uniform(0.5, 1.0, len(out)), 0.0)
    return _one_sided(out)


def busy_customers(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rows`` with the busiest client sending a larger share, up to BUSY_CLIENT_SHARE."""
    out = rows.copy()
    top = out[:, F["top_client_share"]]
    out[:, F["top_client_share"]] = np.maximum(top, rng.uniform(0.0, BUSY_CLIENT_SHARE, len(out)))
    return out


def legitimate_changes(rows: np.ndarray, rng: np.random.Generator, copies: int = AUGMENT_COPIES) -> np.ndarray:
    """Demand changes, some of them during a backend incident and some with a busy customer:
    the widenings combine (a payments outage while one customer retries is still no attack)."""
    out = demand_changes(rows, rng, copies=copies)
    incident = rng.random(len(out)) < INCIDENT_SHARE
    out[incident] = backend_incidents(out[incident], rng)
    busy = rng.random(len(out)) < BUSY_SHARE
    out[busy] = busy_customers(out[busy], rng)
    return out


def _one_sided(rows: np.ndarray) -> np.ndarray:
    """Growth features stay >= 0, as :func:`feature_matrix` computes them."""
    rows[:, GROWTH] = np.maximum(rows[:, GROWTH], 0.0)
    return rows


def prior(rows: np.ndarray, rng: np.random.Generator, count: int = PRIOR_ROWS) -> np.ndarray:
    """Normal rows drawn around the observed medians with ordinary jitter."""
    centre = np.median(rows, axis=0) if len(rows) else np.zeros(len(FEATURE_NAMES))
    out = np.tile(centre, (count, 1))
    noise = {"volume_ratio": 0.2, "clients_ratio": 0.25, "latency_ratio": 0.3, "in_flight_ratio": 0.4}
    for name, sigma in noise.items():
        out[:, F[name]] += rng.normal(0.0, sigma, count)
    out[:, F["requests_per_client_ratio"]] = out[:, F["volume_ratio"]] - out[:, F["clients_ratio"]]
    # Customers mistype passwords and the odd request fails: a window that saw none still
    # allows a few (the MILD attacks below start at 10 % failed authentication).
    for name, occasional in (("auth_failure_share", 0.06), ("server_error_share", 0.03), ("top_client_share", 0.02)):
        out[:, F[name]] = np.clip(out[:, F[name]] * rng.uniform(0.5, 2.0, count) + rng.uniform(0, occasional, count),
                                  0, 1)
    return legitimate_changes(out, rng, copies=1)


@dataclass(frozen=True)
class AttackRange:
    volume: tuple[float, float]
    auth_failure_share: tuple[float, float]
    rate_limited_share: tuple[float, float]    # few noisy bots hit the per-client limit
    top_client_share: tuple[float, float]
    latency: tuple[float, float]
    in_flight: tuple[float, float]


# The mildest floods the detector must still catch: they anchor the score scale (0.9).
MILD = AttackRange((1.3, 2.5), (0.1, 0.4), (0.02, 0.1), (0.05, 0.2), (1, 1.2), (1, 1.3))
# Every flood shape, mild to overwhelming: the validation set.
ANY = AttackRange((1.5, 100), (0.1, 0.95), (0.05, 0.8), (0.05, 0.6), (1, 4), (1, 10))


def synthetic_attacks(rows: np.ndarray, rng: np.random.Generator, count: int = 400,
                      strength: AttackRange = ANY) -> np.ndarray:
    base = rows[rng.integers(0, len(rows), count)].copy()
    u = lambda bounds: rng.uniform(*bounds, size=count)  # noqa: E731
    volume = np.log2(u(strength.volume))
    wide = rng.random(count) < 0.5      # a wide botnet: many clients; else a few noisy bots
    clients = np.where(wide, volume * rng.uniform(0.6, 1.2, count), rng.uniform(-0.5, 1.0, count))
    base[:, F["volume_ratio"]] += volume
    base[:, F["clients_ratio"]] += clients
    base[:, F["requests_per_client_ratio"]] = base[:, F["volume_ratio"]] - base[:, F["clients_ratio"]]
    base[:, F["auth_failure_share"]] = u(strength.auth_failure_share)
    base[:, F["rate_limited_share"]] = np.where(wide, rng.uniform(0, 0.02, count), u(strength.rate_limited_share))
    base[:, F["top_client_share"]] = np.where(wide, base[:, F["top_client_share"]], u(strength.top_client_share))
    base[:, F["latency_ratio"]] += np.log2(u(strength.latency))
    base[:, F["in_flight_ratio"]] += np.log2(u(strength.in_flight))
    return _one_sided(base)


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    calibration: np.ndarray
    calibration_attacks: np.ndarray
    validation_normal: np.ndarray
    validation_attacks: np.ndarray


def split(dataset: Dataset, seed: int = 0, min_rows: int = MIN_NORMAL_ROWS) -> Split:
    min_rows = max(min_rows, MIN_NORMAL_ROWS)
    if len(dataset.normal) < min_rows:
        raise NotEnoughData(
            f"only {len(dataset.normal)} usable normal rows between {time.strftime('%H:%M:%S', time.localtime(dataset.start))}"
            f" and {time.strftime('%H:%M:%S', time.localtime(dataset.end))} (need {min_rows}): "
            "let the lab run with traffic longer, or widen the training window")
    rng = np.random.default_rng(seed)
    cut = int(len(dataset.normal) * (1 - VALIDATION_SHARE))
    fit_rows, held_out = dataset.normal[:cut], dataset.normal[cut:]
    train = np.vstack([fit_rows, legitimate_changes(fit_rows, rng), prior(fit_rows, rng)])
    calibration = np.vstack([fit_rows, legitimate_changes(fit_rows, rng, copies=2), prior(fit_rows, rng)])
    validation_normal = np.vstack([held_out, legitimate_changes(held_out, rng, copies=2)])
    calibration_attacks = synthetic_attacks(fit_rows, rng, strength=MILD)
    attacks = np.vstack([dataset.floods, synthetic_attacks(dataset.normal, rng)])
    return Split(train, calibration, calibration_attacks, validation_normal, attacks)
