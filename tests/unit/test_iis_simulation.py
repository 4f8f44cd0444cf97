"""The simulated IIS estate keeps the seed figures, is repeatable, and obeys every IIS fault.

A simulated day runs through the real exporter state (clock, model, series, families) with an
accelerated clock driven by a fake real-time source: no sleeping, exact and deterministic.

Tolerances (a weekday holds ~13.6 M requests, so Poisson noise is far below them):
off-hours load 100 req/s +-5 %; business hours / off-hours 2.0-2.5; 5xx share 0.1 % +-5 %;
404 share 0.4 % +-5 %; execution time mean 50 ms +-1 ms (from _sum/_count), and mean and sd
fitted to the histogram's buckets 50 +-2 ms and 20 +-2 ms.
"""

from __future__ import annotations

import datetime as dt
from statistics import NormalDist

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from obslab import conventions as c
from obslab.faults.board import FaultBoard
from obslab.faults.model import Fault
from obslab.iis_mock.clock import SimClock
from obslab.iis_mock.exporter import IisExporter
from obslab.sim import iis
from obslab.sim.iis import Batch, Effects, IisModel
from obslab.sim.iis_series import iis_series

K = c.FaultKind
TUESDAY = dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc).timestamp()
HOUR = 3600.0
SITES = [s.site for s in c.IIS_SITES]


@pytest.fixture(autouse=True)
def utc_lab(monkeypatch):
    monkeypatch.delenv("OBSLAB_UTC_OFFSET_HOURS", raising=False)


class FakeReal:
    """Real time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Estate:
    """An exporter on an accelerated clock (one real second = one simulated hour)."""

    def __init__(self, seed: int = 11, start: float = TUESDAY, step: float = 60.0) -> None:
        self.real = FakeReal()
        self.board = FaultBoard(None, clock=self.real)
        self.exporter = IisExporter(clock=SimClock(start, speed=HOUR, real=self.real), board=self.board,
                                    seed=seed, step_seconds=step)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.exporter)

    def run_hours(self, hours: float, ticks_per_hour: int = 60) -> None:
        """Let ``hours`` simulated hours pass, advancing like the exporter's ticker does."""
        for _ in range(max(1, round(hours * ticks_per_hour))):
            self.real.now += 1 / ticks_per_hour
            self.exporter.advance()

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        assert found is not None, (name, labels)
        return found

    def total(self, name: str, label: str, values: list[str], **more: str) -> float:
        return sum(self.value(name, **{label: v}, **more) for v in values)

    def requests(self, sites: list[str] = SITES) -> float:
        return sum(self.value(c.IIS_REQUESTS.name, method=m, site=s) for s in sites for m in iis.IIS_METHOD_MIX)

    def snapshot(self, site: str | None = None) -> dict[str, float]:
        sites = SITES if site is None else [site]
        apps = [s.app_name for s in c.IIS_SITES if s.site in sites]
        hist = c.IIS_EXECUTION_TIME.name
        return {
            "requests": self.requests(sites),
            "5xx": self.total(c.IIS_SERVER_ERRORS.name, "site", sites),
            "404": self.total(c.IIS_CLIENT_ERRORS.name, "site", sites),
            "count": self.total(f"{hist}_count", "site", sites),
            "sum": self.total(f"{hist}_sum", "site", sites),
            **{f"le_{b}": sum(self.value(f"{hist}_bucket", site=s, le=_le(b)) for s in sites)
               for b in c.IIS_EXECUTION_TIME_BUCKETS},
            "exceptions": sum(self.value(c.NETFRAMEWORK_EXCEPTIONS.name, app_name=a, exception_type=t)
                              for a in apps for t in iis.NETFRAMEWORK_EXCEPTION_MIX),
            "custom_503": sum(self.value(c.CUSTOM_ERRORS.name, app_name=a, error_code="503") for a in apps),
        }


def _le(bound: float) -> str:
    from obslab.sim.series import le_value

    return le_value(bound)


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


@pytest.fixture(scope="module")
def day() -> list[dict[str, float]]:
    """Counter snapshots of a simulated Tuesday, one per simulated hour (25: 00:00 .. 24:00)."""
    estate = Estate()
    snapshots = [estate.snapshot()]
    for _ in range(24):
        estate.run_hours(1, ticks_per_hour=1)
        snapshots.append(estate.snapshot())
    return snapshots


def rate(day, first_hour: int, last_hour: int) -> float:
    return (day[last_hour]["requests"] - day[first_hour]["requests"]) / ((last_hour - first_hour) * HOUR)


def test_off_hours_carry_the_base_load_of_one_hundred_requests_per_second(day):
    assert rate(day, 0, 6) == pytest.approx(100.0, rel=0.05)
    assert rate(day, 20, 24) == pytest.approx(100.0, rel=0.05)


def test_business_hours_carry_two_to_two_and_a_half_times_base_load(day):
    ratio = rate(day, 8, 18) / rate(day, 0, 6)
    assert 2.0 <= ratio <= 2.5
    assert 2.4 <= rate(day, 10, 11) / rate(day, 0, 6) <= 2.6      # the late-morning peak


def test_one_in_a_thousand_requests_fails_with_5xx_and_four_in_a_thousand_with_404(day):
    whole = delta(day[0], day[-1])
    assert whole["5xx"] / whole["requests"] == pytest.approx(0.001, rel=0.05)
    assert whole["404"] / whole["requests"] == pytest.approx(0.004, rel=0.05)


def test_execution_time_is_gaussian_around_fifty_milliseconds_with_twenty_milliseconds_spread(day):
    whole = delta(day[0], day[-1])
    assert whole["count"] == whole["requests"]
    assert whole["sum"] / whole["count"] == pytest.approx(0.050, abs=0.001)
    # Fit mean and sd to the histogram itself: two bucket bounds and their cumulative shares.
    standard = NormalDist()
    z_low = standard.inv_cdf(whole["le_0.025"] / whole["count"])
    z_high = standard.inv_cdf(whole["le_0.075"] / whole["count"])
    sd = (0.075 - 0.025) / (z_high - z_low)
    mean = 0.025 - sd * z_low
    assert mean == pytest.approx(0.050, abs=0.002)
    assert sd == pytest.approx(0.020, abs=0.002)
    assert whole["le_0.05"] / whole["count"] == pytest.approx(0.5, abs=0.01)


def test_current_connections_follow_the_load():
    estate = Estate()
    estate.run_hours(3, ticks_per_hour=1)
    night = sum(estate.value(c.IIS_CURRENT_CONNECTIONS.name, site=s) for s in SITES)
    estate.run_hours(7.5, ticks_per_hour=2)                         # 10:30, the morning peak
    peak = sum(estate.value(c.IIS_CURRENT_CONNECTIONS.name, site=s) for s in SITES)
    assert 120 <= night <= 190              # 100 req/s x (50 ms + 1.5 s keep-alive) = 155
    assert 2.0 <= peak / night <= 3.0


def test_equal_seeds_give_equal_series_however_often_the_exporter_is_scraped():
    often, rarely, other = Estate(seed=5), Estate(seed=5), Estate(seed=6)
    for _ in range(12):
        often.run_hours(0.25)
    rarely.run_hours(3, ticks_per_hour=1)
    other.run_hours(3, ticks_per_hour=1)
    assert generate_latest(often.registry) == generate_latest(rarely.registry)
    assert generate_latest(other.registry) != generate_latest(rarely.registry)


def test_the_exported_series_are_exactly_the_seed_families_for_every_site():
    batch = IisModel(1, 60).simulate(TUESDAY + 60.0 * np.arange(1, 4))
    series = iis_series(batch)
    assert {s.spec for s in series} == set(c.IIS_FAMILIES)
    assert {dict(s.labels).get("site") for s in series} >= {site.site for site in c.IIS_SITES}
    assert all(len(s.values) == 3 for s in series)


def test_a_day_in_one_call_equals_a_day_in_many_calls():
    ts = TUESDAY + 60.0 * np.arange(1, 1441)
    whole = IisModel(3, 60).simulate(ts)
    model = IisModel(3, 60)
    pieces = Batch.concatenate([model.simulate(ts[:7]), model.simulate(ts[7:500]), model.simulate(ts[500:])])
    for name in ("requests", "buckets", "exec_sum", "connections", "exceptions", "custom_errors"):
        assert np.array_equal(getattr(whole, name), getattr(pieces, name)), name


# --- faults: (kind, target, params) -> what changes on the target site, and that it ends ----------

def fault(kind: K, target: str, expires_at: float, **params) -> Fault:
    return Fault(id=f"flt_{kind.value}", kind=kind, target=target, params=params, created_at=0.0,
                 expires_at=expires_at)


def measure(estate: Estate, site: str, hours: float = 0.5) -> tuple[dict[str, float], dict[str, float]]:
    before = estate.snapshot(site)
    estate.run_hours(hours)
    return delta(before, estate.snapshot(site)), {
        "pool": estate.value(c.IIS_APP_POOL_STATE.name,
                             app_pool=next(s.app_pool for s in c.IIS_SITES if s.site == site)),
        "connections": estate.value(c.IIS_CURRENT_CONNECTIONS.name, site=site),
    }


def crash_bites(normal, faulty, gauges_normal, gauges_faulty):
    assert gauges_normal["pool"] == c.IIS_APP_POOL_RUNNING and gauges_faulty["pool"] == c.IIS_APP_POOL_STOPPED
    assert faulty["5xx"] / faulty["requests"] > 0.98
    assert faulty["custom_503"] > 0.98 * faulty["requests"] and normal["custom_503"] == 0
    assert gauges_faulty["connections"] < 0.05 * gauges_normal["connections"]


def surge_bites(normal, faulty, *_):
    assert faulty["requests"] / normal["requests"] == pytest.approx(3.0, rel=0.05)


def storm_bites(normal, faulty, *_):
    extra_per_second = (faulty["exceptions"] - normal["exceptions"]) / (0.5 * HOUR)
    assert extra_per_second == pytest.approx(40.0, rel=0.1)


def latency_bites(normal, faulty, *_):
    assert normal["sum"] / normal["count"] == pytest.approx(0.050, abs=0.002)
    assert faulty["sum"] / faulty["count"] == pytest.approx(0.450, abs=0.01)
    assert faulty["le_0.3"] / faulty["count"] < 0.1


def error_rate_bites(normal, faulty, *_):
    assert faulty["5xx"] / faulty["requests"] == pytest.approx(0.20, abs=0.01)
    assert normal["5xx"] / normal["requests"] < 0.002


FAULTS = [
    pytest.param(K.APP_POOL_CRASH, "MobileAPIAppPool", "MobileAPI", {}, crash_bites, id="app_pool_crash"),
    pytest.param(K.VOLUME_SURGE, "OnlineBanking", "OnlineBanking", {"factor": 3.0}, surge_bites, id="volume_surge"),
    pytest.param(K.EXCEPTION_STORM, "CorporatePortal", "CorporatePortal", {"rate": 40.0}, storm_bites,
                 id="exception_storm"),
    pytest.param(K.LATENCY, "OnlineBanking", "OnlineBanking", {"latency_ms": 400, "jitter_ms": 50},
                 latency_bites, id="latency"),
    pytest.param(K.ERROR_RATE, "CorporatePortal", "CorporatePortal", {"rate": 20.0}, error_rate_bites,
                 id="error_rate"),
]


@pytest.mark.parametrize("kind, target, site, params, bites", FAULTS)
def test_each_fault_changes_its_site_while_active_and_stops_when_it_expires(kind, target, site, params, bites):
    estate = Estate()
    estate.run_hours(1)                           # 01:00: off-hours, a flat load
    normal, gauges_normal = measure(estate, site)
    # The board's clock is real time: the fault expires after half a real second (half a
    # simulated hour), half a tick after the last tick of the measurement.
    estate.board.replace([fault(kind, target, expires_at=estate.real.now + 0.5 + 1 / 120, **params)])
    faulty, gauges_faulty = measure(estate, site)
    bites(normal, faulty, gauges_normal, gauges_faulty)
    estate.run_hours(1 / 60)                      # past the expiry
    after, gauges_after = measure(estate, site)
    assert after["requests"] == pytest.approx(normal["requests"], rel=0.05)
    assert after["5xx"] <= 3 * normal["5xx"] + 10
    assert after["sum"] / after["count"] == pytest.approx(0.050, abs=0.002)
    assert after["exceptions"] == pytest.approx(normal["exceptions"], rel=0.2)
    assert gauges_after["pool"] == c.IIS_APP_POOL_RUNNING


@pytest.mark.parametrize("kind, target, site, params, bites", FAULTS)
def test_each_fault_in_history_applies_only_between_its_start_and_its_end(kind, target, site, params, bites):
    index = [s.site for s in c.IIS_SITES].index(site)
    ts = TUESDAY + 60.0 * np.arange(1, 181)                      # 00:01 .. 03:00
    window = Fault(id="f", kind=kind, target=target, params=params,
                   created_at=TUESDAY + HOUR, expires_at=TUESDAY + 2 * HOUR)
    effects = Effects.from_faults([window], len(ts), timestamps=ts)
    batch = IisModel(1, 60).simulate(ts, effects)
    served = batch.buckets[:, index].sum(-1)
    signal = {
        K.APP_POOL_CRASH: batch.pool_state[:, index] == c.IIS_APP_POOL_STOPPED,
        K.VOLUME_SURGE: batch.requests[:, index].sum(-1) > 1.8 * 60 * 50,
        K.EXCEPTION_STORM: batch.exceptions[:, index].sum(-1) > 20 * 60,
        K.LATENCY: batch.exec_sum[:, index] / served > 0.3,
        K.ERROR_RATE: batch.server_errors[:, index] > 0.1 * served,
    }[kind]
    inside = (ts >= window.created_at) & (ts < window.expires_at)
    assert np.array_equal(signal, inside)
