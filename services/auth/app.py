"""auth service: register customers, check passwords, issue access tokens.

Routes (internal; the gateway exposes them under /api/v1/auth):
  POST /users    {username, password} -> 201 {id, username}
  POST /tokens   {username, password} -> 200 {access_token, token_type, expires_in}

Hardening (each part in its own module):

* passwords: the commonest ones, and ones containing the username, are refused at
  registration (policy.py);
* password hashing runs within a memory budget: at most ``OBSLAB_AUTH_HASH_MEMORY_MIB`` of
  Argon2 at once, 503 ``overloaded`` with ``Retry-After`` beyond it (hashing.py), and Argon2
  settings the library would refuse stop auth at start-up;
* logins back off per username and per client address after repeated failures: 429
  ``too_many_attempts`` with ``Retry-After``, before the password is checked (throttle.py). The
  client address is the gateway's ``X-Obslab-Client-Address``: only the gateway may call these
  routes (obslab/topology.py), so the header is the address the gateway established;
* tokens live ``OBSLAB_TOKEN_TTL_SECONDS`` (60 to 3600 s; the gateway refuses longer-lived
  ones whatever their signature); answers carrying credentials or tokens are never cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, Response, request
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, StringConstraints

from obslab import conventions as c
from obslab import secrets, settings
from obslab.platform.app import ServiceContext, create_service_app, parse_body
from obslab.platform.errors import ApiError
from obslab.platform.ids import new_id
from obslab.services.auth import policy
from obslab.services.auth.hashing import HashingGate, Overloaded, password_hasher
from obslab.services.auth.store import UsernameTaken, UserStore, metadata
from obslab.services.auth.throttle import LoginThrottle
from obslab.services.common import tokens
from obslab.services.common.credentials import LoginRequest

EXTENSION = "obslab.auth"
# Answers of these routes carry passwords' verdicts and access tokens: no cache may keep them.
NO_STORE_PATHS = frozenset({"/users", "/tokens"})

# Exactly what the public API document says (openapi.yaml, Username): " bob " or "Bob" is refused
# rather than quietly registered as another name than the one typed.
Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{2,31}$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    password: Password


@dataclass
class AuthState:
    """What auth's routes share; ``app.extensions["obslab.auth"]`` (tests reach the throttle's
    clock and the gate's counters through it)."""

    hasher: PasswordHasher
    gate: HashingGate
    throttle: LoginThrottle
    ttl_seconds: int


def token_ttl_seconds() -> int:
    """``OBSLAB_TOKEN_TTL_SECONDS``; its bounds are tokens.MIN_TOKEN_SECONDS-MAX_TOKEN_SECONDS."""
    return settings.TOKEN_TTL_SECONDS.get()


def create_app(db_url: str | None = None, *, throttle: LoginThrottle | None = None) -> Flask:
    """``throttle``: the login backoff to use (tests pass one with their own clock)."""
    # Settings first: a value that cannot work stops auth here, with one line saying which.
    hasher = password_hasher()
    state = AuthState(hasher=hasher, gate=HashingGate.for_hasher(hasher),
                      throttle=throttle or LoginThrottle(), ttl_seconds=token_ttl_seconds())

    def routes(app: Flask, ctx: ServiceContext) -> None:
        _routes(app, ctx, state)

    app = create_service_app(
        c.AUTH, routes, metadata=metadata, db_url=db_url,
        metric_specs=[c.LOGINS, c.REGISTRATIONS],
    )
    app.extensions[EXTENSION] = state
    return app


def _client_address() -> str:
    return request.headers.get(c.HEADER_CLIENT_ADDRESS) or request.remote_addr or "unknown"


def _invalid_password(problem: str) -> ApiError:
    return ApiError(400, "invalid_request", f"password: {problem}", fields=[{"field": "password", "problem": problem}])


def _routes(app: Flask, ctx: ServiceContext, state: AuthState) -> None:
    assert ctx.db is not None
    store = UserStore(ctx.db)
    hasher, gate = state.hasher, state.gate
    # Verifying against this when the user does not exist keeps "no such user" as slow as
    # "wrong password", so response times do not reveal which usernames exist.
    with gate.slot():
        decoy_hash = hasher.hash(new_id("decoy_"))
    secret = secrets.jwt_secret()
    ttl = state.ttl_seconds

    def overloaded(metric) -> ApiError:
        ctx.metrics.count(metric, outcome="overloaded")
        trace.get_current_span().set_attribute(c.ATTR_OUTCOME, "overloaded")
        return ApiError(503, "overloaded", "too many password checks at once; retry in a moment",
                        retry_after_seconds=Overloaded.retry_after_seconds)

    @app.after_request
    def _no_store(response: Response) -> Response:
        if request.path in NO_STORE_PATHS:
            response.headers["Cache-Control"] = "no-store"
            response.headers["Pragma"] = "no-cache"
        return response

    @app.post("/users")
    def register():
        body = parse_body(Credentials)
        problem = policy.password_problem(body.username, body.password)
        if problem:
            ctx.metrics.count(c.REGISTRATIONS, outcome="weak_password")
            raise _invalid_password(problem)
        try:
            # The 409 says the name is taken anyway; checking first saves an Argon2 hash (tens of
            # milliseconds of CPU) on every repeated registration, e.g. the load generator's start.
            if store.by_username(body.username) is not None:
                raise UsernameTaken(body.username)
            try:
                with gate.registration_slot():
                    password_hash = hasher.hash(body.password)
            except Overloaded:
                raise overloaded(c.REGISTRATIONS) from None
            user = store.create(new_id(c.CUSTOMER_ID_PREFIX), body.username, password_hash)
        except UsernameTaken:
            ctx.metrics.count(c.REGISTRATIONS, outcome="username_taken")
            raise ApiError(409, "username_taken", f"username {body.username!r} is already registered") from None
        ctx.metrics.count(c.REGISTRATIONS, outcome="created")
        return {"id": user.id, "username": user.username}, 201

    @app.post("/tokens")
    def login():
        body = parse_body(LoginRequest)
        span = trace.get_current_span()
        attempt = state.throttle.attempt(body.username, _client_address())
        if not attempt.allowed:
            ctx.metrics.count(c.LOGINS, outcome="too_many_attempts")
            span.set_attribute(c.ATTR_OUTCOME, "too_many_attempts")
            raise ApiError(429, "too_many_attempts",
                           f"too many failed logins; try again in {attempt.retry_after_seconds} seconds",
                           retry_after_seconds=attempt.retry_after_seconds)
        try:
            user = store.by_username(body.username)
            new_hash = None
            try:
                with gate.slot():
                    try:
                        hasher.verify(user.password_hash if user else decoy_hash, body.password)
                        valid = user is not None
                    except (VerificationError, InvalidHashError):
                        valid = False
                    if valid and user is not None and hasher.check_needs_rehash(user.password_hash):
                        new_hash = hasher.hash(body.password)
            except Overloaded:
                raise overloaded(c.LOGINS) from None
            span.set_attribute(c.ATTR_OUTCOME, "success" if valid else "invalid_credentials")
            if not valid or user is None:
                attempt.failed()
                ctx.metrics.count(c.LOGINS, outcome="invalid_credentials")
                raise ApiError(401, "invalid_credentials", "unknown username or wrong password")
            if new_hash is not None:
                store.set_password_hash(user.id, new_hash)
            attempt.succeeded()
        finally:
            attempt.abandoned()  # no verdict (overloaded, database error): the attempt does not count
        ctx.metrics.count(c.LOGINS, outcome="success")
        token = tokens.issue(secret, tokens.Identity(user.id, user.username), ttl)
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}
