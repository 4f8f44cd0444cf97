"""The gateway's edge guard: a WSGI layer in front of Flask and its tracing that answers what the
edge refuses without the framework's cost.

Under a DDoS flood nearly every request is refused: bots send no access token, a forged one, or
a login body that cannot be credentials. Each refusal went through Flask, its instrumentation,
the platform's hooks and, for junk logins, a hop to auth: about 2.5 ms of the gateway's CPU, so
the gateway answered some 320 requests/s and real customers queued behind the bots
(``obslab bench flood``).

Every ``/api/v1`` request is judged once, here: who the client is (services/gateway/edge.py),
whether it is over its rate, and, where the route needs one, whether its access token is valid
and, for a login, whether its body is credentials at all. The :class:`Verdict` stays in the WSGI
environ; a request the guard lets through reaches Flask, whose hooks read the verdict instead of
judging again. A refusal is answered as Flask would answer it (status, JSON body, ``Retry-After``,
no-store on logins, the W3C ``traceresponse`` header) and observed the same way: a server span
with the route's name and HTTP attributes, the RED metrics with that span as exemplar, the access
log line, and the audit record of a state-changing call. Spans and log lines are kept to
``OBSLAB_EDGE_DETAILED_REFUSALS`` a second (20 by default, above a normal day's refusals); a
flood's other refusals are counted in full by the metrics and summed up in one log line a second
(:class:`DetailBudget`).

The guard stands where a real edge (a WAF, an API gateway's filter) stands: in front of the
application. Faults injected into the gateway (obslab/faults) act on the application behind it,
so a refusal is not slowed or failed by them.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

import opentelemetry.instrumentation.wsgi as otel_wsgi
from flask import Flask
from opentelemetry import context, trace
from opentelemetry.instrumentation._semconv import (
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
)
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.utils import _start_internal_or_server_span
from opentelemetry.propagate import extract
from opentelemetry.propagators.textmap import default_setter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule

from obslab import conventions as c
from obslab.platform.control import parse_bearer
from obslab.platform.app import record_request, red_method
from obslab.platform.errors import ApiError, validation_error
from obslab.services.common import tokens
from obslab.services.gateway.edge import ClientWindow, RateLimiter
from obslab.telemetry.metrics import MetricSet

log = logging.getLogger(__name__)

def wsgi_header(name: str) -> str:
    """A request header's key in the WSGI environ.

    >>> wsgi_header("X-Forwarded-For")
    'HTTP_X_FORWARDED_FOR'
    """
    return "HTTP_" + name.upper().replace("-", "_")


VERDICT_KEY = "obslab.gateway.verdict"
IDEMPOTENCY_KEY_ENVIRON = wsgi_header(c.HEADER_IDEMPOTENCY_KEY)
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Auth marks its credential answers no-store; the gateway's own refusal of a login does too.
NO_STORE_HEADERS = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


@dataclass
class Verdict:
    """What the edge decided about one request."""

    client: str
    rule: Rule | None = None
    refusal: ApiError | None = None           # answered by the guard, never by a route
    identity: tokens.Identity | None = None   # a customer route's verified access token


@dataclass(frozen=True)
class LoginCheck:
    """The login route and the model its body must fit (auth's own, so both refuse alike)."""

    route: str
    model: type[BaseModel]
    max_body_bytes: int


class EdgeGuard:
    """WSGI middleware: ``app.wsgi_app = EdgeGuard(app, app.wsgi_app, ...)``."""

    def __init__(self, app: Flask, inner: Callable, *, service: str, metrics: MetricSet,
                 customer_routes: Iterable[tuple[str, str]], jwt_secret: str, limiter: RateLimiter,
                 window: ClientWindow, resolve_client: Callable[[Mapping], str],
                 audit: Callable[[str, str, int, str | None], None], login: LoginCheck | None = None,
                 detailed_per_second: float = 20.0) -> None:
        self.app, self.inner, self.service = app, inner, service
        self.metrics, self.limiter, self.window = metrics, limiter, window
        self.customer_routes = frozenset(customer_routes)   # (method, rule) needing a customer token
        self.secret = jwt_secret
        self.resolve_client = resolve_client
        self.audit = audit
        self.login = login
        self.prefix = c.API_PREFIX + "/"
        self.tracer = trace.get_tracer(__name__)
        _OpenTelemetrySemanticConventionStability._initialize()
        self.semconv = _OpenTelemetrySemanticConventionStability._get_opentelemetry_stability_opt_in_mode(
            _OpenTelemetryStabilitySignalType.HTTP)
        self.in_flight = metrics.gauge(c.HTTP_SERVER_IN_FLIGHT).labels(service=service)
        self.details = DetailBudget(detailed_per_second)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        # As Werkzeug routes it: "//api/v1/accounts" is the accounts route, and judged as one.
        if not ("/" + environ.get("PATH_INFO", "").lstrip("/")).startswith(self.prefix):
            return self.inner(environ, start_response)
        started = time.perf_counter()
        verdict = environ[VERDICT_KEY] = self.judge(environ)
        if verdict.refusal is None:
            return self.inner(environ, start_response)
        return self.refuse(environ, start_response, verdict, started)

    # --- judging -----------------------------------------------------------------------------------

    def judge(self, environ: dict) -> Verdict:
        verdict = Verdict(client=self.resolve_client(environ))
        self.window.record(verdict.client)
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            verdict.rule, _ = self.app.url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException:
            pass   # 404 and 405 are Flask's to answer, after the rate limit
        if not self.limiter.allow(verdict.client):
            self.metrics.count(c.GATEWAY_RATE_LIMITED)
            verdict.refusal = ApiError(429, "rate_limited", f"too many requests from {verdict.client}; at most "
                                       f"{self.limiter.rate:g} per second", retry_after_seconds=1)
            return verdict
        if verdict.rule is None:
            return verdict
        key = ("GET" if method == "HEAD" else method, verdict.rule.rule)
        if key in self.customer_routes:
            verdict.refusal, verdict.identity = self._customer(environ)
        elif self.login is not None and key == ("POST", self.login.route):
            verdict.refusal = self._login_body(environ)
        return verdict

    def _customer(self, environ: Mapping) -> tuple[ApiError | None, tokens.Identity | None]:
        token = parse_bearer(environ.get("HTTP_AUTHORIZATION", ""))
        if token is None:
            return ApiError(401, "unauthenticated",
                            "send 'Authorization: Bearer <access_token>' (POST /api/v1/auth/login)"), None
        try:
            return None, tokens.verify(self.secret, token)
        except tokens.InvalidToken as exc:
            return ApiError(401, "invalid_token", str(exc)), None

    def _login_body(self, environ: dict) -> ApiError | None:
        """A body that cannot be credentials is refused here, as auth would refuse it; the body
        read is put back for Flask when the login goes on."""
        assert self.login is not None
        limit = self.login.max_body_bytes
        stream = environ["wsgi.input"]
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            if not environ.get("wsgi.input_terminated"):
                return None     # a stream of unknown length: Flask reads it, within its size limit
            data = stream.read(limit + 1)   # the server buffered it whole (chunked): one byte over is enough
            environ["wsgi.input"] = io.BytesIO(data)
            if len(data) > limit:
                return None     # Flask answers 413
        else:
            if not 0 <= length <= limit:
                return None     # Flask answers 413
            data = stream.read(length)
            environ["wsgi.input"] = io.BytesIO(data)
        if not data.strip():
            return ApiError(400, "invalid_request", "request body must be a JSON object")
        try:
            self.login.model.model_validate_json(data)
        except ValidationError as exc:
            return validation_error(exc)
        return None

    # --- answering a refusal ----------------------------------------------------------------------

    def refuse(self, environ: dict, start_response: Callable, verdict: Verdict, started: float) -> Iterable[bytes]:
        assert verdict.refusal is not None
        error, method = verdict.refusal, environ.get("REQUEST_METHOD", "GET")
        known = red_method(method)
        route = verdict.rule.rule if verdict.rule is not None else "unmatched"
        detailed = self.details.allow(error.status)
        attributes: dict = {}
        if detailed:
            attributes = otel_wsgi.collect_request_attributes(environ, self.semconv)
            attributes[HTTP_ROUTE] = route
            span, token = _start_internal_or_server_span(
                tracer=self.tracer, span_name=f"{'HTTP' if known == 'OTHER' else method} {route}",
                start_time=None, context_carrier=environ, context_getter=otel_wsgi.wsgi_getter,
                attributes=attributes)
        else:
            span, token = untraced_span(environ), None
        self.in_flight.inc()
        try:
            with trace.use_span(span, end_on_exit=True):
                response = self.app.json.response(error.body())
                response.status_code = error.status
                retry_after = error.details.get("retry_after_seconds")
                if isinstance(retry_after, int) and retry_after > 0:
                    response.headers["Retry-After"] = str(retry_after)
                if self.login is not None and route == self.login.route:
                    response.headers.extend(NO_STORE_HEADERS)
                propagator = get_global_response_propagator()
                if propagator is not None:
                    propagator.inject(response.headers, setter=default_setter)
                if detailed:
                    span.set_attribute(c.ATTR_CLIENT_ADDRESS, verdict.client)
                    otel_wsgi.add_response_attributes(span, f"{error.status} {HTTPStatus(error.status).phrase}", [],
                                                      attributes, self.semconv)
                record_request(self.metrics, self.service, known, route, error.status,
                               time.perf_counter() - started, logged=detailed)
                if method in STATE_CHANGING:
                    self.audit(method, route, error.status, environ.get(IDEMPOTENCY_KEY_ENVIRON))
        finally:
            self.in_flight.dec()
            if token is not None:
                context.detach(token)
        return response(environ, start_response)


class DetailBudget:
    """How many refusals a second are traced and logged one by one (``rate``); the others are
    counted by status and summed up in one log line at most every ``every_s``.

    A flood's ten-thousandth 401 tells nothing its metrics do not, and its span and log line
    were a third of what it cost the gateway. Below the budget (the lab's normal day, a few
    failed logins) every refusal is traced and logged as before.

    >>> budget = DetailBudget(rate=2, clock=lambda: 0.0)
    >>> [budget.allow(401) for _ in range(4)], budget.pending
    ([True, True, False, False], {401: 2})
    """

    def __init__(self, rate: float, every_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limiter = RateLimiter(rate=rate, burst=rate, clock=clock) if rate > 0 else None
        self.every_s, self.clock = every_s, clock
        self.pending: dict[int, int] = {}
        self._since = clock()
        self._lock = threading.Lock()

    def allow(self, status: int) -> bool:
        if self.limiter is not None and self.limiter.allow("refusals"):
            return True
        now = self.clock()
        with self._lock:
            self.pending[status] = self.pending.get(status, 0) + 1
            if now - self._since < self.every_s:
                return False
            counts, seconds = self.pending, now - self._since
            self.pending, self._since = {}, now
        log.info("refusals not traced or logged one by one", extra={
            "refused": sum(counts.values()), "by_status": {str(k): v for k, v in sorted(counts.items())},
            "seconds": round(seconds, 1)})
        return False


def untraced_span(environ: Mapping) -> trace.Span:
    """A span that records nothing but still has an id for the ``traceresponse`` header: the
    caller's trace when it sent one, unsampled."""
    parent = trace.get_current_span(extract(environ, getter=otel_wsgi.wsgi_getter)).get_span_context()
    trace_id = parent.trace_id if parent.is_valid else _IDS.generate_trace_id()
    return trace.NonRecordingSpan(trace.SpanContext(trace_id, _IDS.generate_span_id(), is_remote=False,
                                                    trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT)))


_IDS = RandomIdGenerator()
