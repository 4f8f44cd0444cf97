"""gateway service: the public c.API_PREFIX (``/api/v1``, described in ``openapi.yaml`` beside this file).

It verifies the caller's access token locally, vouches for the customer to the internal
services with a signed assertion (obslab/platform/identity.py), checks every id in a path against
its pattern and quotes it before it goes into an internal URL, forwards requests, answers every
response with a W3C ``traceresponse`` header, and keeps an audit log of every state-changing call
in its own database. ``gateway_active_customers{window}`` counts the distinct customers whose
verified token made a request in the last 5 minutes and hour (never their ids).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import quote

from flask import Flask, Response, g, request
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table

from obslab import conventions as c
from obslab import secrets, settings, topology
from obslab.platform.app import ServiceContext, create_service_app, parse_body, query_int, require_query
from obslab.platform.clock import now_ms
from obslab.platform.errors import ApiError
from obslab.platform.http import ServiceClient
from obslab.platform.identity import IdentityError
from obslab.services.common.money import Currency
from obslab.services.common.credentials import LoginRequest
from obslab.services.gateway.audit import AuditWriter
from obslab.services.gateway.edge import (
    ClientWindow,
    CustomerWindow,
    RateLimiter,
    client_address,
    client_key,
    trusted_proxies,
)
from obslab.services.gateway.guard import STATE_CHANGING, VERDICT_KEY, EdgeGuard, LoginCheck, wsgi_header
from obslab.telemetry import current_trace_ids

log = logging.getLogger(__name__)

AUDIT_EXTENSION = "obslab.gateway.audit"
SERVICE_TOKEN_ENVIRON = wsgi_header(c.HEADER_SERVICE_TOKEN)
FORWARDED_FOR_ENVIRON = wsgi_header(c.HEADER_FORWARDED_FOR)
# Ids a customer may name in a path or query, checked before they go into an internal URL.
ACCOUNT_ID = re.compile(c.ACCOUNT_ID_PATTERN)
TRANSFER_ID = re.compile(c.TRANSFER_ID_PATTERN)
PAYMENT_ID = re.compile(c.PAYMENT_ID_PATTERN)

metadata = MetaData()
audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("customer_id", String(40)),
    Column("method", String(8), nullable=False),
    Column("route", String(80), nullable=False),
    Column("status", Integer, nullable=False),
    Column("trace_id", String(32)),
    Column("idempotency_key_sha256", String(64)),
    Index("ix_audit_customer", "customer_id", "at_ms"),
)


class OpenAccountRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: Currency
    type: Literal["checking", "savings"] = "checking"


def public_account(account: dict) -> dict:
    return {"id": account["id"], "type": account["type"], "currency": account["currency"],
            "balance": account["balance"]}


def create_app(db_url: str | None = None, peer_urls: dict[str, str] | None = None,
               customers: CustomerWindow | None = None) -> Flask:
    """``customers``: where active customers are counted (a test passes one with its own clock)."""
    def routes(app: Flask, ctx: ServiceContext) -> None:
        _routes(app, ctx, customers or CustomerWindow(c.ACTIVE_CUSTOMER_WINDOWS))

    return create_service_app(
        c.GATEWAY, routes, metadata=metadata, db_url=db_url,
        peers=topology.service_peers(c.GATEWAY), peer_urls=peer_urls,
        metric_specs=[c.AUDIT_RECORDS, c.GATEWAY_RATE_LIMITED, c.GATEWAY_ACTIVE_CUSTOMERS],
    )


def checked_id(pattern: re.Pattern, value: str, what: str) -> str:
    """``value`` quoted for a URL path when it is a well-formed id; a 404 otherwise (an id that
    cannot exist is not found, whatever else it may try to say to the service behind)."""
    if not pattern.fullmatch(value):
        raise ApiError(404, f"{what}_not_found", f"{what.replace('_', ' ')} not found")
    return quote(value, safe="")


def _forward(client: ServiceClient, method: str, path: str, *, customer: bool = True,
             params: dict | None = None) -> Response:
    """Send the caller's request on unchanged and answer with the service's answer."""
    headers = {"Content-Type": "application/json", c.HEADER_CLIENT_ADDRESS: g.client}
    key = request.headers.get(c.HEADER_IDEMPOTENCY_KEY)
    if key is not None:
        headers[c.HEADER_IDEMPOTENCY_KEY] = key
    data = request.get_data() if method in STATE_CHANGING else None
    upstream = client.request(method, path, data=data, params=params, headers=headers, for_customer=customer)
    response = Response(upstream.content, status=upstream.status_code, content_type="application/json")
    # Auth marks credentials and tokens no-store; the other answers say how to retry.
    for header in (c.HEADER_IDEMPOTENT_REPLAYED, "Retry-After", "Cache-Control", "Pragma"):
        value = upstream.headers.get(header)
        if value:
            response.headers[header] = value
    return response


def _routes(app: Flask, ctx: ServiceContext, customers: CustomerWindow) -> None:
    assert ctx.db is not None
    db = ctx.db
    auth, accounts = ctx.peer(c.AUTH), ctx.peer(c.ACCOUNTS)
    transactions, payments = ctx.peer(c.TRANSACTIONS), ctx.peer(c.PAYMENTS)
    secret = secrets.jwt_secret()
    signer, verifier = ctx.identity.signer, ctx.identity.verifier
    trusted = trusted_proxies()
    limiter = RateLimiter.from_environment()
    window = ClientWindow()
    ctx.metrics.gauge(c.GATEWAY_ACTIVE_CLIENTS).set_function(window.active_clients)
    ctx.metrics.gauge(c.GATEWAY_TOP_CLIENT_SHARE).set_function(window.top_client_share)
    active_customers = ctx.metrics.gauge(c.GATEWAY_ACTIVE_CUSTOMERS)
    for label in customers.windows:
        active_customers.labels(window=label).set_function(lambda label=label: customers.active(label))

    def forwarding_caller(environ: Mapping) -> bool:
        """The load generator stands for the internet's many clients: it may say which one sent
        a request, and proves it is the load generator with its service token."""
        token = environ.get(SERVICE_TOKEN_ENVIRON)
        if not token:
            return False
        try:
            return verifier.caller(token) in topology.FORWARDING_CALLERS
        except IdentityError:
            return False

    def resolve_client(environ: Mapping) -> str:
        peer = environ.get("REMOTE_ADDR")
        forwarded = environ.get(FORWARDED_FOR_ENVIRON)
        return client_key(client_address(peer, forwarded, trusted,
                                          trust_peer=bool(forwarded) and forwarding_caller(environ)))

    audit = app.extensions[AUDIT_EXTENSION] = AuditWriter(db, audit_log, ctx.metrics)
    ctx.shutdown_hooks.append(audit.close)

    def write_audit(method: str, route: str, status: int, customer_id: str | None, key: str | None) -> None:
        ids = current_trace_ids()
        record = {
            "at_ms": now_ms(),
            "customer_id": customer_id,
            "method": method,
            "route": route,
            "status": status,
            "trace_id": ids[0] if ids else None,
            "idempotency_key_sha256": hashlib.sha256(key.encode()).hexdigest() if key else None,
        }
        audit.record(record)

    guard = EdgeGuard(
        app, app.wsgi_app, service=ctx.name, metrics=ctx.metrics, jwt_secret=secret, limiter=limiter,
        window=window, resolve_client=resolve_client,
        customer_routes=[key for key, endpoint in topology.endpoints(c.GATEWAY).items() if endpoint.access == "customer"],
        audit=lambda method, route, status, key: write_audit(method, route, status, None, key),
        login=LoginCheck(f"{c.API_PREFIX}/auth/login", LoginRequest, app.config["MAX_CONTENT_LENGTH"]),
        detailed_per_second=settings.EDGE_DETAILED_REFUSALS.get(),
    )
    app.wsgi_app = guard  # type: ignore[method-assign]   # outermost: in front of the tracing too

    @app.before_request
    def _edge():
        g.client = request.remote_addr or "unknown"
        if not request.path.startswith(c.API_PREFIX + "/"):
            return None
        # Judged by the guard on the way in; a request that reached Flask otherwise is judged now.
        verdict = request.environ.get(VERDICT_KEY) or guard.judge(request.environ)
        if verdict.refusal is not None:
            raise verdict.refusal
        g.client, g.verdict = verdict.client, verdict
        trace.get_current_span().set_attribute(c.ATTR_CLIENT_ADDRESS, verdict.client)
        return None

    @app.before_request
    def _authenticate():
        """The customer's verified access token, on every endpoint the topology marks "customer"."""
        g.identity = None
        endpoint = g.get("endpoint")   # looked up by the platform's access check
        if endpoint is None or endpoint.access != "customer":
            return None  # unknown routes answer 404/405, open ones need no token
        identity = g.verdict.identity
        if identity is None:   # the guard refuses these before Flask: fail closed all the same
            raise ApiError(401, "unauthenticated", "a valid access token is required")
        customers.record(identity.customer_id)
        g.identity = identity
        g.customer_assertion = signer.customer_assertion(identity.customer_id)
        return None

    @app.after_request
    def _audit(response: Response) -> Response:
        if request.method in STATE_CHANGING and request.path.startswith(c.API_PREFIX + "/"):
            write_audit(request.method, request.url_rule.rule if request.url_rule is not None else "unmatched",
                        response.status_code, g.identity.customer_id if g.get("identity") else None,
                        request.headers.get(c.HEADER_IDEMPOTENCY_KEY))
        return response

    @app.post(f"{c.API_PREFIX}/auth/register")
    def register():
        return _forward(auth, "POST", "/users", customer=False)

    @app.post(f"{c.API_PREFIX}/auth/login")
    def login():
        return _forward(auth, "POST", "/tokens", customer=False)

    @app.get(f"{c.API_PREFIX}/accounts")
    def list_accounts():
        owned = accounts.call("GET", "/accounts", for_customer=True)
        return [public_account(a) for a in owned]

    @app.post(f"{c.API_PREFIX}/accounts")
    def open_account():
        body = parse_body(OpenAccountRequest)
        account = accounts.call("POST", "/accounts", json={"currency": body.currency, "type": body.type},
                                for_customer=True)
        return public_account(account), 201

    @app.get(f"{c.API_PREFIX}/accounts/<account_id>")
    def get_account(account_id: str):
        account = accounts.call("GET", f"/accounts/{checked_id(ACCOUNT_ID, account_id, 'account')}",
                                for_customer=True)
        return public_account(account)

    @app.post(f"{c.API_PREFIX}/transfers")
    def create_transfer():
        return _forward(transactions, "POST", "/transfers")

    @app.get(f"{c.API_PREFIX}/transfers")
    def list_transfers():
        account = require_query("account")
        checked_id(ACCOUNT_ID, account, "account")
        params = {"account": account, "limit": query_int("limit", 50, 1, 200)}
        return _forward(transactions, "GET", "/transfers", params=params)

    @app.get(f"{c.API_PREFIX}/transfers/<transfer_id>")
    def get_transfer(transfer_id: str):
        return _forward(transactions, "GET", f"/transfers/{checked_id(TRANSFER_ID, transfer_id, 'transfer')}")

    @app.post(f"{c.API_PREFIX}/payments")
    def create_payment():
        return _forward(payments, "POST", "/payments")

    @app.get(f"{c.API_PREFIX}/payments/<payment_id>")
    def get_payment(payment_id: str):
        return _forward(payments, "GET", f"/payments/{checked_id(PAYMENT_ID, payment_id, 'payment')}")
