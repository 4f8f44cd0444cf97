import time

import jwt
import pytest

from obslab.services.common import tokens

SECRET = "test-secret-" + "x" * 32
ALICE = tokens.Identity("cus_alice", "alice")


def test_a_token_round_trips_to_the_identity():
    token = tokens.issue(SECRET, ALICE, ttl_seconds=60)
    assert tokens.verify(SECRET, token) == ALICE


def test_an_expired_token_is_refused_with_a_hint():
    token = tokens.issue(SECRET, ALICE, ttl_seconds=60, now=time.time() - 3600)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.verify(SECRET, token)


def test_a_token_signed_with_another_key_is_refused():
    token = tokens.issue("another-secret-" + "y" * 32, ALICE, ttl_seconds=60)
    with pytest.raises(tokens.InvalidToken, match="invalid token"):
        tokens.verify(SECRET, token)


@pytest.mark.parametrize("claims", [
    {"sub": "cus_x", "iss": "someone-else", "aud": tokens.AUDIENCE},
    {"sub": "cus_x", "iss": tokens.ISSUER, "aud": "another-api"},
    {"iss": tokens.ISSUER, "aud": tokens.AUDIENCE},  # no subject
])
def test_tokens_for_another_issuer_audience_or_without_subject_are_refused(claims):
    now = int(time.time())
    token = jwt.encode({**claims, "iat": now, "exp": now + 60}, SECRET, algorithm="HS256")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(SECRET, token)


def test_the_none_algorithm_is_refused():
    now = int(time.time())
    token = jwt.encode({"sub": "cus_x", "iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "iat": now,
                        "exp": now + 60}, key=None, algorithm="none")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(SECRET, token)
