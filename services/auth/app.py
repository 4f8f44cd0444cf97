"""auth service: register customers, check passwords, issue access tokens.

Routes (internal; the gateway exposes them under /api/v1/auth):
  POST /users    {username, password} -> 201 {id, username}
  POST /tokens   {username, password} -> 200 {access_token, token_type, expires_in}
"""

from __future__ import annotations

from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, StringConstraints

from obslab import conventions as c
from obslab import settings
from obslab.services.auth.store import UserStore, UsernameTaken, metadata
from obslab.services.common import tokens
from obslab.services.common.app import ServiceContext, create_service_app, parse_body
from obslab.services.common.errors import ApiError
from obslab.services.common.ids import new_id

Username = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z0-9][a-z0-9_.-]{2,31}$"),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    password: Password


class LoginRequest(BaseModel):
    # No length rules on login: a wrong password of any length is just a wrong password.
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=64)]
    password: Annotated[str, StringConstraints(max_length=1024)]


def password_hasher() -> PasswordHasher:
    """Argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile) unless overridden."""
    defaults = PasswordHasher()
    return PasswordHasher(
        time_cost=settings.int_setting("OBSLAB_ARGON2_TIME_COST", defaults.time_cost, minimum=1),
        memory_cost=settings.int_setting("OBSLAB_ARGON2_MEMORY_KIB", defaults.memory_cost, minimum=8),
        parallelism=defaults.parallelism,
    )


def create_app(db_url: str | None = None) -> Flask:
    return create_service_app(
        c.AUTH, _routes, metadata=metadata, db_url=db_url,
        metric_specs=[c.LOGINS, c.REGISTRATIONS],
    )


def _routes(app: Flask, ctx: ServiceContext) -> None:
    assert ctx.db is not None
    store = UserStore(ctx.db)
    hasher = password_hasher()
    # Verifying against this when the user does not exist keeps "no such user" as slow as
    # "wrong password", so response times do not reveal which usernames exist.
    decoy_hash = hasher.hash(new_id("decoy_"))
    secret = settings.jwt_secret()
    ttl = settings.int_setting("OBSLAB_TOKEN_TTL_SECONDS", 900, minimum=10)

    @app.post("/users")
    def register():
        body = parse_body(Credentials)
        try:
            # The 409 says the name is taken anyway; checking first saves an Argon2 hash (tens of
            # milliseconds of CPU) on every repeated registration, e.g. the load generator's start.
            if store.by_username(body.username) is not None:
                raise UsernameTaken(body.username)
            user = store.create(new_id(c.CUSTOMER_ID_PREFIX), body.username, hasher.hash(body.password))
        except UsernameTaken:
            ctx.metrics.count(c.REGISTRATIONS, outcome="username_taken")
            raise ApiError(409, "username_taken", f"username {body.username!r} is already registered") from None
        ctx.metrics.count(c.REGISTRATIONS, outcome="created")
        return {"id": user.id, "username": user.username}, 201

    @app.post("/tokens")
    def login():
        body = parse_body(LoginRequest)
        user = store.by_username(body.username)
        try:
            hasher.verify(user.password_hash if user else decoy_hash, body.password)
            valid = user is not None
        except (VerificationError, InvalidHashError):
            valid = False
        trace.get_current_span().set_attribute(c.ATTR_OUTCOME, "success" if valid else "invalid_credentials")
        if not valid or user is None:
            ctx.metrics.count(c.LOGINS, outcome="invalid_credentials")
            raise ApiError(401, "invalid_credentials", "unknown username or wrong password")
        if hasher.check_needs_rehash(user.password_hash):
            store.set_password_hash(user.id, hasher.hash(body.password))
        ctx.metrics.count(c.LOGINS, outcome="success")
        token = tokens.issue(secret, tokens.Identity(user.id, user.username), ttl)
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}
