"""Journey start rates: the week's shape times a volume surge, as a Poisson process."""

import datetime as dt
import random

import pytest

from obslab import conventions as c
from obslab.faults.board import FaultBoard
from obslab.faults.model import Fault
from obslab.services.loadgen.pacing import Arrivals, surge_factor, target_rate

UTC = dt.timezone.utc
MONDAY_1030 = dt.datetime(2026, 11, 23, 10, 30, tzinfo=UTC).timestamp()
MONDAY_0300 = dt.datetime(2026, 11, 23, 3, 0, tzinfo=UTC).timestamp()
SATURDAY_1100 = dt.datetime(2026, 11, 28, 11, 0, tzinfo=UTC).timestamp()


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    monkeypatch.delenv("OBSLAB_UTC_OFFSET_HOURS", raising=False)


def test_business_hours_carry_two_to_two_and_a_half_times_the_base_rate():
    assert 2.0 * 2 <= target_rate(2.0, MONDAY_1030) <= 2.5 * 2


def test_night_carries_the_base_rate_and_weekends_less():
    assert target_rate(2.0, MONDAY_0300) == pytest.approx(2.0)
    assert target_rate(2.0, SATURDAY_1100) == pytest.approx(1.6)


def test_a_flat_run_ignores_the_time_of_day():
    assert target_rate(3.0, MONDAY_1030, flat=True) == pytest.approx(3.0)
    assert target_rate(3.0, SATURDAY_1100, flat=True) == pytest.approx(3.0)


def test_a_surge_multiplies_the_shaped_rate():
    assert target_rate(2.0, MONDAY_1030, surge=4.0) == pytest.approx(4 * target_rate(2.0, MONDAY_1030))
    assert target_rate(2.0, MONDAY_0300, flat=True, surge=2.5) == pytest.approx(5.0)


def _fault(kind, target, **params):
    now = dt.datetime.now(UTC).timestamp()
    return Fault(id=f"flt_{kind.value}", kind=kind, target=target, params=params, created_at=now,
                 expires_at=now + 60)


def test_the_surge_factor_comes_from_an_active_volume_surge_on_the_gateway_only():
    board = FaultBoard(None)
    assert surge_factor(board) == 1.0
    board.replace([_fault(c.FaultKind.VOLUME_SURGE, "OnlineBanking", factor=9.0)])
    assert surge_factor(board) == 1.0
    board.replace([_fault(c.FaultKind.VOLUME_SURGE, c.GATEWAY, factor=4.0)])
    assert surge_factor(board) == 4.0
    board.replace([])
    assert surge_factor(board) == 1.0


def test_an_expired_surge_no_longer_counts():
    board = FaultBoard(None)
    expired = Fault(id="flt_old", kind=c.FaultKind.VOLUME_SURGE, target=c.GATEWAY, params={"factor": 5.0},
                    created_at=1.0, expires_at=2.0)
    board.replace([expired])
    assert surge_factor(board) == 1.0


def test_arrivals_average_the_target_rate_over_a_long_window():
    arrivals = Arrivals(random.Random(11))
    rate, horizon = 5.0, 2_000.0
    t, count = 0.0, 0
    while True:
        t += arrivals.gap(rate)
        if t > horizon:
            break
        count += 1
    expected = rate * horizon
    assert abs(count - expected) < 4 * expected ** 0.5   # Poisson: variance = mean


def test_arrival_gaps_are_exponential_not_regular():
    arrivals = Arrivals(random.Random(5))
    gaps = [arrivals.gap(2.0) for _ in range(20_000)]
    mean = sum(gaps) / len(gaps)
    variance = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    assert mean == pytest.approx(0.5, rel=0.03)
    assert variance == pytest.approx(0.25, rel=0.08)    # an exponential's variance is its mean squared


def test_a_zero_rate_never_starts_anything():
    assert Arrivals(random.Random(1)).gap(0.0) == float("inf")
