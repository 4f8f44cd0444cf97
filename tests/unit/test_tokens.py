import base64
import json
import time

import jwt
import pytest

from obslab.services.common import tokens

SECRET = "test-secret-" + "x" * 32
ALICE = tokens.Identity("cus_alice", "alice")


def _claims(**overrides):
    now = int(time.time())
    return {"sub": "cus_x", "iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "iat": now, "exp": now + 60, **overrides}


def test_a_token_round_trips_to_the_identity():
    token = tokens.issue(SECRET, ALICE, ttl_seconds=60)
    assert tokens.verify(SECRET, token) == ALICE


def test_an_expired_token_is_refused_with_a_hint():
    token = tokens.issue(SECRET, ALICE, ttl_seconds=60, now=time.time() - 3600)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.verify(SECRET, token)


def test_a_token_signed_with_another_key_is_refused():
    token = tokens.issue("another-secret-" + "y" * 32, ALICE, ttl_seconds=60)
    with pytest.raises(tokens.InvalidToken) as refused:
        tokens.verify(SECRET, token)
    assert str(refused.value) == tokens.BAD_SIGNATURE


@pytest.mark.parametrize("claims, reason", [
    ({"iss": "someone-else"}, tokens.WRONG_AUDIENCE_OR_ISSUER),
    ({"aud": "another-api"}, tokens.WRONG_AUDIENCE_OR_ISSUER),
    ({"sub": None}, tokens.MISSING_CLAIM),  # no subject
    ({"exp": None}, tokens.MISSING_CLAIM),
    ({"iat": None}, tokens.MISSING_CLAIM),
    ({"iat": "yesterday"}, tokens.MISSING_CLAIM),
    ({"nbf": int(time.time()) + 600}, tokens.NOT_YET_VALID),
])
def test_tokens_for_another_issuer_audience_or_without_a_claim_are_refused_with_a_fixed_reason(claims, reason):
    body = {k: v for k, v in _claims(**claims).items() if v is not None}
    with pytest.raises(tokens.InvalidToken) as refused:
        tokens.verify(SECRET, jwt.encode(body, SECRET, algorithm="HS256"))
    assert str(refused.value) == reason


def test_the_none_algorithm_is_refused():
    token = jwt.encode(_claims(), key=None, algorithm="none")
    with pytest.raises(tokens.InvalidToken) as refused:
        tokens.verify(SECRET, token)
    assert str(refused.value) in tokens.REASONS


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


HOSTILE = [
    "not.a.jwt",
    "",
    "a.b",
    "%%%.%%%.%%%",
    _b64(b"{not json") + "." + _b64(b"{}") + ".sig",
    _b64(json.dumps({"alg": "HS256", "kid": "../../etc/passwd"}).encode()) + "." + _b64(b"[1, 2]") + ".sig",
    _b64(json.dumps({"alg": "RS256"}).encode()) + "." + _b64(json.dumps(_claims()).encode()) + ".sig",
    jwt.encode(_claims(), SECRET + "z" * 32, algorithm="HS512"),  # an algorithm the verifier does not take
    jwt.encode(_claims(), SECRET, algorithm="HS256")[:-4] + "AAAA",
]


@pytest.mark.parametrize("token", HOSTILE)
def test_a_refusal_says_one_of_a_few_fixed_reasons_never_the_librarys_words(token):
    try:
        jwt.decode(token, SECRET, algorithms=["HS256"], audience=tokens.AUDIENCE, issuer=tokens.ISSUER)
        library_says = None
    except jwt.InvalidTokenError as exc:
        library_says = str(exc)
    with pytest.raises(tokens.InvalidToken) as refused:
        tokens.verify(SECRET, token)
    message = str(refused.value)
    assert message in tokens.REASONS
    assert library_says is None or library_says not in message


@pytest.mark.parametrize("issued_ago, lifetime", [(0, 7 * 86400), (6 * 86400, 7 * 86400), (0, 3601)])
def test_a_token_living_longer_than_the_maximum_is_refused_whatever_its_signature(issued_ago, lifetime):
    now = int(time.time())
    token = jwt.encode(_claims(iat=now - issued_ago, nbf=now - issued_ago, exp=now - issued_ago + lifetime),
                       SECRET, algorithm="HS256")
    with pytest.raises(tokens.InvalidToken) as refused:
        tokens.verify(SECRET, token)
    assert str(refused.value) == tokens.LIFETIME_TOO_LONG


def test_a_token_of_exactly_the_maximum_lifetime_is_accepted():
    now = int(time.time())
    token = jwt.encode(_claims(iat=now, exp=now + tokens.MAX_TOKEN_SECONDS), SECRET, algorithm="HS256")
    assert tokens.verify(SECRET, token).customer_id == "cus_x"


@pytest.mark.parametrize("ttl", [0, -1, tokens.MAX_TOKEN_SECONDS + 1, 7 * 86400])
def test_auth_cannot_issue_a_token_outside_the_allowed_lifetime(ttl):
    with pytest.raises(ValueError):
        tokens.issue(SECRET, ALICE, ttl_seconds=ttl)
