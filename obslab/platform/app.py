"""The one way a service is built: telemetry, errors, health, metrics and its own database.

A service module only describes itself (name, tables, peers, metric specs, routes) and calls
:func:`create_service_app`; everything an operator relies on is wired here, identically for all.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask, Response, g, jsonify, request
from opentelemetry import trace
from pydantic import BaseModel
from sqlalchemy import MetaData, event

from obslab import __version__
from obslab import conventions as c
from obslab import secrets, topology
from obslab.faults.board import FaultBoard, process_board
from obslab.faults.model import POLL_PATH, Fault, injected_delay_seconds
from obslab.platform.control import authenticate_control
from obslab.platform.db import Database
from obslab.platform.errors import ApiError, register_error_handlers
from obslab.platform.http import ServiceClient
from obslab.platform.identity import (
    CALLER_NOT_ALLOWED,
    CUSTOMER_ASSERTION_MISSING,
    INVALID_CUSTOMER_ASSERTION,
    INVALID_SERVICE_TOKEN,
    SERVICE_CREDENTIAL_MISSING,
    IdentityError,
    ServiceIdentity,
)
from obslab.telemetry import (
    MetricSet,
    configure_logging,
    configure_tracing,
    exposition,
    instrument_flask_app,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# Left out of RED metrics and faults: probes, scrapes, and the fault poll every process makes each second.
_OPERATIONAL_PATHS = topology.OPERATIONAL_ROUTES | {POLL_PATH}
_READ_METHODS = frozenset({"GET", "HEAD"})
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_DIGITS = re.compile(r"[0-9]{1,9}")
# Request bodies: API calls are small JSON objects; components that take more say so.
API_MAX_BODY_BYTES = 64 * 1024

RED_METRICS = (c.HTTP_SERVER_REQUESTS, c.HTTP_SERVER_DURATION, c.HTTP_SERVER_IN_FLIGHT)


@dataclass
class ServiceContext:
    """What a service's routes need: its metrics, database and peers."""

    name: str
    metrics: MetricSet
    identity: ServiceIdentity
    db: Database | None = None
    peers: dict[str, ServiceClient] = field(default_factory=dict)
    readiness_checks: dict[str, Callable[[], None]] = field(default_factory=dict)
    # Run when the service stops, before its spans are flushed (what it still holds in memory).
    shutdown_hooks: list[Callable[[], None]] = field(default_factory=list)

    def peer(self, name: str) -> ServiceClient:
        return self.peers[name]


def create_service_app(
    name: str,
    register_routes: Callable[[Flask, ServiceContext], None],
    *,
    metadata: MetaData | None = None,
    db_url: str | None = None,
    peers: Iterable[str] = (),
    peer_urls: dict[str, str] | None = None,
    metric_specs: Iterable = (),
    traced: bool = True,
    faults: FaultBoard | None = None,
    max_body_bytes: int = API_MAX_BODY_BYTES,
) -> Flask:
    """``max_body_bytes``: the largest request body (413 above it)."""
    if metadata is not None and not topology.component(name).database:
        # Compose gives a database (and its password) only to the components topology names.
        raise ValueError(f"{name} declares tables but obslab/topology.py does not give it a database "
                         "(set database=True on its Component)")
    configure_logging(name)
    # A component without its key (or with a known one) must not start: it could not prove who
    # it is, nor check who calls it.
    identity = ServiceIdentity.load(name)
    # Before tracing: the span pipeline counts its exports and drops in this service's metrics.
    metrics = MetricSet()
    if traced:
        configure_tracing(name, metrics=metrics)
    app = Flask(name)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    register_error_handlers(app)
    if traced:
        instrument_flask_app(app)

    metrics.declare(RED_METRICS)
    metrics.declare(metric_specs)
    ctx = ServiceContext(name=name, metrics=metrics, identity=identity)
    if metadata is not None:
        db_errors = metrics.counter(c.DB_ERRORS)
        for kind in c.DbErrorKind:  # every kind at 0 from the start: rate() works, panels show 0
            db_errors.labels(service=name, kind=kind.value)
        ctx.db = Database(
            name, metadata, db_url,
            on_retry=lambda: metrics.count(c.DB_CONTENTION_RETRIES, service=name),
            on_error=lambda kind: metrics.count(c.DB_ERRORS, service=name, kind=kind.value),
        )
        ctx.readiness_checks["database"] = ctx.db.ping
        metrics.declare([c.DB_CONTENTION_RETRIES])
    urls = peer_urls or {}
    for peer in peers:
        ctx.peers[peer] = ServiceClient(name, peer, metrics, base_url=urls.get(peer), signer=identity.signer)

    if name in c.BANKING_SERVICES:
        board = faults if faults is not None else process_board()
        board.authenticate_with(identity.signer)
        apply_faults = _obey_faults(ctx, board)
    else:
        apply_faults = None
    _register_operational_routes(app, ctx)
    _register_red_metrics(app, ctx)
    _register_access_control(app, ctx)
    if apply_faults is not None:
        # After the RED timer starts, so injected latency and errors show in the service's own metrics.
        @app.before_request
        def _inject_faults():
            if request.path not in _OPERATIONAL_PATHS:
                apply_faults()
    register_routes(app, ctx)
    _check_every_route_is_declared(app, name)
    app.extensions["obslab"] = ctx
    log.info("service configured", extra={
        "version": __version__, "database": ctx.db.describe() if ctx.db else None,
        "peers": {p: client.base_url for p, client in ctx.peers.items()},
    })
    return app


def context(app: Flask) -> ServiceContext:
    return app.extensions["obslab"]


def _register_operational_routes(app: Flask, ctx: ServiceContext) -> None:
    register_operational_routes(app, name=ctx.name, registry=ctx.metrics.registry,
                                readiness_checks=ctx.readiness_checks)


def register_operational_routes(app: Flask, *, name: str, registry: Any,
                                readiness_checks: dict[str, Callable[[], Any]] | None = None,
                                describe: Callable[[], dict[str, Any]] = dict,
                                before_scrape: Callable[[], Any] | None = None) -> None:
    """``/health`` (alive), ``/ready`` (every readiness check passes, else 503) and ``/metrics``
    (``registry`` as OpenMetrics or text) for any Flask component; ``describe`` adds to the two
    documents, ``before_scrape`` runs before each scrape (the IIS mock advances its clock)."""
    checks_by_name = readiness_checks if readiness_checks is not None else {}

    @app.get("/health")
    def health():
        return {"status": "ok", "service": name, "version": __version__, **describe()}

    @app.get("/ready")
    def ready():
        checks: dict[str, str] = {}
        for check_name, check in checks_by_name.items():
            try:
                check()
                checks[check_name] = "ok"
            except Exception as exc:  # a readiness probe reports, it never raises
                checks[check_name] = f"failing: {type(exc).__name__}"
        healthy = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if healthy else "unready", "service": name, "checks": checks, **describe()}
        return jsonify(body), 200 if healthy else 503

    @app.get("/metrics")
    def metrics():
        if before_scrape is not None:
            before_scrape()
        payload, content_type = exposition(registry, request.headers.get("Accept"))
        return Response(payload, content_type=content_type)


def _endpoint_key(method: str) -> str:
    return "GET" if method == "HEAD" else method


def _register_access_control(app: Flask, ctx: ServiceContext) -> None:
    """Every request to a declared endpoint proves what the topology requires of its caller."""
    table = topology.endpoints(ctx.name)
    verifier = ctx.identity.verifier
    # Loaded now, so that a component whose control tokens are missing refuses to start.
    digests = secrets.control_principals() if any(e.access == "control" for e in table.values()) else {}

    @app.before_request
    def _authorize():
        rule = request.url_rule
        if rule is None:
            return None  # unknown routes answer 404/405
        if rule.rule in topology.OPERATIONAL_ROUTES and request.method in _READ_METHODS:
            return None  # probes and scrapers need nothing
        if request.method == "OPTIONS" and rule.provide_automatic_options:
            return None  # Flask's own answer: the Allow header, no view runs
        endpoint = table.get((_endpoint_key(request.method), rule.rule))
        if endpoint is None:  # cannot happen for a route checked at start-up; fail closed anyway
            raise ApiError(403, CALLER_NOT_ALLOWED, "this endpoint is not in the lab's topology")
        g.endpoint = endpoint   # a component's own checks read it (the gateway's "customer" ones)
        if endpoint.access == "control":
            g.principal = authenticate_control(endpoint.callers, digests)
        elif endpoint.access == "service":
            g.caller = _authenticate_service(verifier, endpoint.callers)
            assertion = request.headers.get(c.HEADER_CUSTOMER_ASSERTION)
            if assertion:
                try:
                    g.customer = verifier.customer(assertion)
                except IdentityError as exc:
                    raise ApiError(401, INVALID_CUSTOMER_ASSERTION, str(exc)) from None
                g.customer_assertion = assertion
        return None


def _authenticate_service(verifier, allowed: tuple[str, ...]) -> str:
    token = request.headers.get(c.HEADER_SERVICE_TOKEN)
    if not token:
        raise ApiError(401, SERVICE_CREDENTIAL_MISSING,
                       f"internal endpoint: send the calling service's {c.HEADER_SERVICE_TOKEN}")
    try:
        caller = verifier.caller(token)
    except IdentityError as exc:
        raise ApiError(401, INVALID_SERVICE_TOKEN, str(exc)) from None
    if caller not in allowed:
        raise ApiError(403, CALLER_NOT_ALLOWED, f"{caller} may not call this endpoint")
    return caller


def _check_every_route_is_declared(app: Flask, name: str) -> None:
    declared = topology.endpoints(name)

    def exempt(rule, method: str) -> bool:
        if method == "HEAD" or (method == "OPTIONS" and rule.provide_automatic_options):
            return True
        return rule.rule in topology.OPERATIONAL_ROUTES and method == "GET"

    missing = sorted(
        f"{method} {rule.rule}" for rule in app.url_map.iter_rules() if rule.endpoint != "static"
        for method in (rule.methods or ()) if not exempt(rule, method) and (method, rule.rule) not in declared
    )
    if missing:
        raise AssertionError(f"{name}: routes missing from obslab.topology.ENDPOINTS: {', '.join(missing)}")


def _note_fault(ctx: ServiceContext, fault: Fault) -> None:
    ctx.metrics.count(c.FAULT_APPLIED, service=ctx.name, fault=fault.kind.value)
    trace.get_current_span().add_event(c.EVENT_FAULT_INJECTED, {
        c.ATTR_FAULT_ID: fault.id, c.ATTR_FAULT_KIND: fault.kind.value, c.ATTR_FAULT_TARGET: fault.target,
    })


def _obey_faults(ctx: ServiceContext, board: FaultBoard) -> Callable[[], None]:
    """Make this service obey the fault control plane (no I/O per request: the board is local).

    Slows the service's SQL statements while ``db_slow`` is on, reports not ready while
    ``unavailable`` is on, and returns the per-request hook for the request-level faults."""
    ctx.metrics.declare([c.FAULT_APPLIED])
    rng = random.Random()
    K = c.FaultKind

    def unavailable() -> None:
        fault = board.find(K.UNAVAILABLE, ctx.name)
        if fault is not None:
            raise RuntimeError(f"unavailable by injected fault {fault.id}")

    ctx.readiness_checks["faults"] = unavailable

    def before_request() -> None:
        path = request.path
        fault = board.find(K.UNAVAILABLE, ctx.name)
        if fault is not None:
            _note_fault(ctx, fault)
            raise ApiError(503, "service_unavailable",
                           f"{ctx.name} is unavailable (injected fault {fault.id})")
        fault = board.find(K.LATENCY, ctx.name, path)
        if fault is not None:
            _note_fault(ctx, fault)
            time.sleep(injected_delay_seconds(fault, rng))
        fault = board.find(K.ERROR_RATE, ctx.name, path)
        if fault is not None and rng.random() * 100 < fault.param("rate", 0):
            _note_fault(ctx, fault)
            raise ApiError(500, "internal_error", f"internal error (injected fault {fault.id})")

    if ctx.db is not None:
        @event.listens_for(ctx.db.engine, "before_cursor_execute")
        def _slow_statement(*_args) -> None:
            fault = board.find(K.DB_SLOW, ctx.name)
            if fault is not None:
                ctx.metrics.count(c.FAULT_APPLIED, service=ctx.name, fault=fault.kind.value)
                time.sleep(injected_delay_seconds(fault, rng))

    return before_request


def _route_label() -> str:
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def _register_red_metrics(app: Flask, ctx: ServiceContext) -> None:
    in_flight = ctx.metrics.gauge(c.HTTP_SERVER_IN_FLIGHT).labels(service=ctx.name)

    @app.before_request
    def _start_timer():
        if request.path in _OPERATIONAL_PATHS:
            return
        g.obslab_started = time.perf_counter()
        in_flight.inc()

    @app.after_request
    def _record(response: Response) -> Response:
        started = g.pop("obslab_started", None)
        if started is None:
            return response
        in_flight.dec()
        record_request(ctx.metrics, ctx.name, red_method(request.method), _route_label(), response.status_code,
                       time.perf_counter() - started)
        return response


def red_method(method: str) -> str:
    """The ``method`` label: a known method, else OTHER (a client must not mint label values)."""
    return method if method in _KNOWN_METHODS else "OTHER"


def record_request(metrics: MetricSet, service: str, method: str, route: str, status: int, elapsed: float, *,
                   logged: bool = True) -> None:
    """The RED metrics of one answered request (the current span as exemplar) and its access log
    line; the gateway's edge guard answers some requests before Flask and records them here too."""
    metrics.count(c.HTTP_SERVER_REQUESTS, service=service, method=method, route=route, code=str(status))
    metrics.observe(c.HTTP_SERVER_DURATION, elapsed, service=service, method=method, route=route)
    if logged:
        log.info("request", extra={"method": method, "route": route, "status": status,
                                   "duration_ms": round(elapsed * 1000, 2)})


# --- helpers for route handlers ---------------------------------------------------------------


def parse_body(model: type[M]) -> M:
    """The request's JSON body as ``model``; a 400 naming the first bad field otherwise."""
    data = request.get_data(cache=True)
    if not data.strip():
        raise ApiError(400, "invalid_request", "request body must be a JSON object")
    return model.model_validate_json(data)


def query_int(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() also says yes to "²", which int() then refuses.
    if not _DIGITS.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise ApiError(400, f"invalid_{name}", f"{name} must be an integer between {minimum} and {maximum}")
    return int(raw)


def require_query(name: str) -> str:
    value = request.args.get(name, "")
    if not value:
        raise ApiError(400, f"missing_{name}", f"query parameter {name!r} is required")
    return value


def require_customer() -> str:
    """The customer the gateway vouched for (its signed assertion, verified on arrival)."""
    customer = g.get("customer")
    if not customer:
        raise ApiError(401, CUSTOMER_ASSERTION_MISSING,
                       f"this endpoint acts for a customer: send the gateway's {c.HEADER_CUSTOMER_ASSERTION}")
    return customer


def caller() -> str:
    """The component that called this internal endpoint (verified)."""
    return g.caller


def require_idempotency_key() -> str:
    key = request.headers.get(c.HEADER_IDEMPOTENCY_KEY)
    if key is None:
        raise ApiError(400, "missing_idempotency_key",
                       f"send an {c.HEADER_IDEMPOTENCY_KEY} header (a unique string per operation, "
                       "e.g. a UUID) so that a retried request cannot move money twice")
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(400, "invalid_idempotency_key",
                       f"{c.HEADER_IDEMPOTENCY_KEY} must be 1-255 printable ASCII characters without spaces")
    return key
