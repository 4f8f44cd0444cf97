"""Access tokens: JWT (HS256) issued by auth, verified by the gateway without a network call."""

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


@dataclass(frozen=True)
class Identity:
    customer_id: str
    username: str


class InvalidToken(Exception):
    """The token is missing a claim, expired, forged or malformed; the message says which."""


def issue(secret: str, identity: Identity, ttl_seconds: int, now: float | None = None) -> str:
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


def verify(secret: str, token: str) -> Identity:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
            leeway=LEEWAY_SECONDS, options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired; log in again") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"invalid token: {exc}") from None
    return Identity(customer_id=str(claims["sub"]), username=str(claims.get("name", "")))
