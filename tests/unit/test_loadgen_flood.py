"""The flood's shape and requests: ramp, plateau around the asked rate, pulses, cheap junk."""

import json
import random

import pytest
from pydantic import ValidationError

from obslab.services.auth.app import LoginRequest
from obslab.services.loadgen.flood import (
    CREDENTIAL_STUFFING,
    FLOOD_MIX,
    FORGED_TOKEN,
    JUNK_LOGIN,
    NO_TOKEN,
    FloodShape,
    _TokenBucket,
    default_threads,
    flood_request,
)


def _samples(shape: FloodShape, start: float, stop: float, step: float = 0.1) -> list[float]:
    return [shape.rate(start + i * step) for i in range(int((stop - start) / step))]


def test_a_flood_ramps_up_from_a_trickle_to_its_full_rate():
    shape = FloodShape(1000, ramp_seconds=20)
    assert shape.rate(0) < 0.05 * 1000
    ramp = [shape.ramp(t / 10) for t in range(0, 201)]
    assert ramp == sorted(ramp)
    assert shape.ramp(20) == 1.0
    assert shape.rate(5) < shape.rate(10) < shape.rate(19)


def test_the_plateau_averages_the_asked_rate_with_jitter_and_pulses():
    shape = FloodShape(800, ramp_seconds=20, seed=3)
    plateau = _samples(shape, 20, 20 + 900)
    mean = sum(plateau) / len(plateau)
    assert mean == pytest.approx(800, rel=0.03)
    assert max(plateau) > 1.2 * 800        # pulses
    assert min(plateau) > 0.7 * 800        # wobbles, never gaps
    assert len({round(v) for v in plateau[:100]}) > 20   # not a flat line


def test_no_flood_before_it_starts_and_no_ramp_when_ramp_is_zero():
    assert FloodShape(100).rate(-1) == 0
    assert FloodShape(100, ramp_seconds=0).rate(0) > 70


def test_senders_scale_with_the_rate_within_bounds():
    assert default_threads(10) == 2
    assert default_threads(1000) == 20
    assert default_threads(20_000) == 32


def test_flood_requests_target_cheap_endpoints():
    rng = random.Random(1)
    assert flood_request(NO_TOKEN, rng)[:2] == ("GET", "/api/v1/accounts")
    method, path, _, headers = flood_request(FORGED_TOKEN, rng)
    assert (method, path) == ("GET", "/api/v1/accounts") and headers["Authorization"].startswith("Bearer eyJ")
    assert sum(share for _, share in FLOOD_MIX) == pytest.approx(1.0)


def test_junk_logins_are_refused_before_any_password_is_checked():
    rng = random.Random(2)
    for _ in range(50):
        method, path, body, _ = flood_request(JUNK_LOGIN, rng)
        assert (method, path) == ("POST", "/api/v1/auth/login")
        with pytest.raises((ValidationError, ValueError)):
            LoginRequest.model_validate(json.loads(body))


def test_credential_stuffing_sends_well_formed_logins():
    body = flood_request(CREDENTIAL_STUFFING, random.Random(3))[2]
    LoginRequest.model_validate(json.loads(body))


def test_the_credential_stuffing_cap_lets_through_only_its_rate():
    bucket = _TokenBucket(2.0)
    assert sum(bucket.take() for _ in range(50)) <= 2
    assert not _TokenBucket(0).take()
