"""The control plane's credential: ``Authorization: Bearer <token>`` naming a principal.

The fault-injector and the alert-receiver's webhooks change what the lab does or shows, so they
answer only a token the lab generated (``obslab.secrets``: ``operator`` for people, the CLI and
drills, ``alertmanager`` for notifications). The verifier keeps only the SHA-256 of each token.
The principal is who the audit log names: never a header the caller chose.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from flask import request

from obslab import secrets
from obslab.platform.errors import ApiError

AUTHORIZATION = "Authorization"


def bearer_token() -> str | None:
    return parse_bearer(request.headers.get(AUTHORIZATION, ""))


def parse_bearer(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value.

    >>> parse_bearer("Bearer abc"), parse_bearer("bearer  abc "), parse_bearer("Basic abc"), parse_bearer("")
    ('abc', 'abc', None, None)
    """
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def authenticate_control(allowed: Collection[str], digests: Mapping[str, str] | None = None) -> str:
    """The principal of this request's control token; 401 without a valid one, 403 when the
    principal may not do this."""
    token = bearer_token()
    if token is None:
        raise ApiError(401, "unauthenticated",
                       "send 'Authorization: Bearer <control token>' (the lab's token is in "
                       "<data dir>/run/secrets/operator/token; `obslab` commands find it themselves)")
    principal = secrets.principal_of(token, digests if digests is not None else secrets.control_principals())
    if principal is None:
        raise ApiError(401, "invalid_token", "the control token is not one of this lab's")
    if principal not in allowed:
        raise ApiError(403, "forbidden", f"{principal} may not do this")
    return principal
