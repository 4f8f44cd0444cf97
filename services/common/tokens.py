"""Access tokens: JWT (HS256) issued by auth, verified by the gateway without a network call.

A refused token gets one of a few fixed reasons (:data:`REASONS`), never the JWT library's own
text: that names claims, algorithms and parsing internals a caller has no use for and an
attacker probing the verifier would.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

ISSUER = "obslab-auth"
AUDIENCE = "obslab-api"
ALGORITHM = "HS256"
# Tolerated clock difference between the issuing and verifying hosts.
LEEWAY_SECONDS = 5
# The longest life a token may have (exp - iat), whatever its signature says: a leaked signing
# key or a misconfigured issuer cannot mint week-long tokens that the gateway would accept.
MAX_TOKEN_SECONDS = 3600
MIN_TOKEN_SECONDS = 60

EXPIRED = "token expired; log in again"
MALFORMED = "invalid token: malformed"
BAD_SIGNATURE = "invalid token: bad signature"
WRONG_AUDIENCE_OR_ISSUER = "invalid token: not issued for this API"
NOT_YET_VALID = "invalid token: not valid yet"
MISSING_CLAIM = "invalid token: a required claim is missing or malformed"
LIFETIME_TOO_LONG = f"invalid token: lifetime longer than {MAX_TOKEN_SECONDS} seconds"
INVALID = "invalid token"
REASONS = (EXPIRED, MALFORMED, BAD_SIGNATURE, WRONG_AUDIENCE_OR_ISSUER, NOT_YET_VALID, MISSING_CLAIM,
           LIFETIME_TOO_LONG, INVALID)

# Most specific first: several of PyJWT's errors derive from others (e.g. InvalidSignatureError
# from DecodeError).
_REASON_BY_ERROR: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, EXPIRED),
    (jwt.InvalidSignatureError, BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, BAD_SIGNATURE),
    (jwt.InvalidAudienceError, WRONG_AUDIENCE_OR_ISSUER),
    (jwt.InvalidIssuerError, WRONG_AUDIENCE_OR_ISSUER),
    (jwt.ImmatureSignatureError, NOT_YET_VALID),
    (jwt.MissingRequiredClaimError, MISSING_CLAIM),
    (jwt.InvalidIssuedAtError, MISSING_CLAIM),
    (jwt.exceptions.InvalidSubjectError, MISSING_CLAIM),
    (jwt.DecodeError, MALFORMED),
)


@dataclass(frozen=True)
class Identity:
    customer_id: str
    username: str


class InvalidToken(Exception):
    """The token is missing a claim, expired, forged or malformed; the message says which
    (one of :data:`REASONS`)."""


def issue(secret: str, identity: Identity, ttl_seconds: int, now: float | None = None) -> str:
    if not 0 < ttl_seconds <= MAX_TOKEN_SECONDS:
        raise ValueError(f"a token lives at most {MAX_TOKEN_SECONDS} seconds, got {ttl_seconds}")
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": identity.customer_id,
        "name": identity.username,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _reason(exc: Exception) -> str:
    for error, reason in _REASON_BY_ERROR:
        if isinstance(exc, error):
            return reason
    return INVALID


def verify(secret: str, token: str) -> Identity:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
            leeway=LEEWAY_SECONDS, options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(_reason(exc)) from None
    except Exception:  # whatever else the library may raise on hostile input, say nothing of it
        raise InvalidToken(MALFORMED) from None
    try:
        lifetime = float(claims["exp"]) - float(claims["iat"])
    except (TypeError, ValueError):
        raise InvalidToken(MISSING_CLAIM) from None
    if lifetime > MAX_TOKEN_SECONDS:
        raise InvalidToken(LIFETIME_TOO_LONG)
    return Identity(customer_id=str(claims["sub"]), username=str(claims.get("name", "")))
