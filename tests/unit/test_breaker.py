import pytest

from obslab.platform.breaker import BreakerState, CircuitBreaker, CircuitOpenError


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make(threshold=3, reset=10.0):
    clock = Clock()
    changes = []
    breaker = CircuitBreaker("peer", failure_threshold=threshold, reset_timeout=reset,
                             on_change=changes.append, clock=clock)
    return breaker, clock, changes


def test_breaker_opens_after_consecutive_failures_and_fails_fast():
    breaker, _clock, changes = make(threshold=3)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert changes == [BreakerState.OPEN]
    with pytest.raises(CircuitOpenError):
        breaker.before_call()


def test_a_success_resets_the_failure_count():
    breaker, _clock, _ = make(threshold=2)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_after_the_reset_timeout_one_trial_call_is_allowed():
    breaker, clock, changes = make(threshold=1, reset=10)
    breaker.record_failure()
    clock.now = 9.9
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    clock.now = 10.0
    breaker.before_call()                      # the trial
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpenError):
        breaker.before_call()                  # only one trial at a time
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_a_failed_trial_reopens_for_another_timeout():
    breaker, clock, _ = make(threshold=1, reset=5)
    breaker.record_failure()
    clock.now = 5
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now = 9
    with pytest.raises(CircuitOpenError):
        breaker.before_call()


@pytest.mark.parametrize("kwargs", [{"failure_threshold": 0}, {"reset_timeout": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        CircuitBreaker("peer", **kwargs)
