"""Calls from one service to another: timeouts, a circuit breaker, metrics, clear failures.

urllib3's connection pool, not requests: a transfer makes four such calls, and requests' own
layer (sessions, cookies, hooks, environment merging) cost a third of each call's CPU in
transactions, the busiest process, without doing anything a call between services needs.
Trace context travels in the ``traceparent`` header, injected by the urllib3 instrumentation.
Connection errors are retried (the request never left, so any method is safe); read timeouts
and 5xx are not, because the peer may have acted. A dependency that is down becomes an
:class:`ApiError` (503/504) naming the peer, so callers answer with a useful error, not a 500.
"""

from __future__ import annotations

import json as jsonlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from flask import g, has_request_context
from urllib3.exceptions import HTTPError, MaxRetryError, ReadTimeoutError
from urllib3.util.retry import Retry

from obslab import conventions as c
from obslab import settings
from obslab.platform.breaker import BreakerState, CircuitBreaker, CircuitOpenError
from obslab.platform.errors import ApiError
from obslab.platform.identity import INTERNAL_AUTH_ERRORS, Signer
from obslab.telemetry import MetricSet

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 1.0


@dataclass(frozen=True)
class PeerResponse:
    """A peer's whole answer, read before the connection goes back to the pool."""
    status_code: int
    content: bytes
    headers: urllib3.HTTPHeaderDict

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON."""
        return jsonlib.loads(self.content)


class ServiceClient:
    """HTTP client for one peer service.

    >>> client = ServiceClient("transactions", "fraud", MetricSet(process_metrics=False),
    ...                        base_url="http://127.0.0.1:8085")
    >>> client.base_url
    'http://127.0.0.1:8085'
    """

    def __init__(
        self,
        owner: str,
        peer: str,
        metrics: MetricSet,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        failure_threshold: int = 5,
        reset_timeout: float = 10.0,
        signer: Signer | None = None,
    ) -> None:
        """``signer``: the owner's signing side; every call then carries its service token."""
        self.owner = owner
        self.signer = signer
        self.peer = peer
        self.base_url = (base_url or settings.service_url(peer)).rstrip("/")
        self.timeout = timeout if timeout is not None else settings.HTTP_TIMEOUT_SECONDS.get()
        self.metrics = metrics
        self._breaker_gauge = metrics.gauge(c.CIRCUIT_BREAKER_OPEN).labels(service=owner, peer=peer)
        self._breaker_gauge.set(0)
        self.breaker = CircuitBreaker(
            peer, failure_threshold=failure_threshold, reset_timeout=reset_timeout,
            on_change=self._breaker_changed,
        )
        # Peers are addressed directly: never through a proxy from the environment.
        # Connection failures only; a peer's 429/503 with Retry-After is its answer to pass on, not
        # something to sleep on and retry here (urllib3 would otherwise, even with status=0).
        retry = Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0,
                      backoff_factor=0.05, allowed_methods=None, respect_retry_after_header=False)
        self._path_prefix = urlsplit(self.base_url).path
        # Up to 32 connections kept alive; more concurrent calls open extra ones (block=False).
        self.pool = urllib3.connection_from_url(self.base_url, maxsize=32, block=False, retries=retry)

    def _breaker_changed(self, state: BreakerState) -> None:
        self._breaker_gauge.set(1 if state is BreakerState.OPEN else 0)
        log.warning("circuit breaker state changed", extra={"peer": self.peer, "state": state.value})

    def _observe(self, started: float, outcome: str) -> None:
        self.metrics.observe(
            c.HTTP_CLIENT_DURATION, time.perf_counter() - started,
            service=self.owner, peer=self.peer, outcome=outcome,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        for_customer: bool = False,
    ) -> PeerResponse:
        """Send a request; 2xx-4xx responses are returned, technical failures raise ApiError.

        ``for_customer``: the call acts for the customer of the request being served, so the
        gateway's assertion travels along (only to peers that act on a customer's money)."""
        headers = {**(headers or {}), **self._credentials(for_customer)}
        if json is not None:
            data = jsonlib.dumps(json).encode()
            headers["Content-Type"] = "application/json"
        target = self._path_prefix + path
        if params:
            target += "?" + urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
        try:
            self.breaker.before_call()
        except CircuitOpenError:
            self._observe(time.perf_counter(), "circuit_open")
            raise ApiError(503, "dependency_unavailable",
                           f"{self.peer} is failing; calls are paused (circuit breaker open)",
                           dependency=self.peer) from None
        started = time.perf_counter()
        try:
            answer = self.pool.urlopen(
                method, target, body=data, headers=headers, redirect=False,
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=timeout or self.timeout),
            )
        except HTTPError as exc:
            self.breaker.record_failure()
            if _is_read_timeout(exc):
                self._observe(started, "timeout")
                raise ApiError(504, "dependency_timeout", f"{self.peer} did not answer in time",
                               dependency=self.peer) from None
            self._observe(started, "unreachable")
            log.warning("dependency unreachable", extra={"peer": self.peer, "error": str(exc)})
            raise ApiError(503, "dependency_unavailable", f"{self.peer} is unreachable",
                           dependency=self.peer) from None
        response = PeerResponse(answer.status, answer.data, answer.headers)
        if 300 <= response.status_code < 400:   # peers are called directly; no route of theirs redirects
            self.breaker.record_failure()
            self._observe(started, "server_error")
            raise ApiError(502, "dependency_error",
                           f"{self.peer} answered HTTP {response.status_code}, a redirect: check its URL",
                           dependency=self.peer)
        if response.status_code >= 500:
            self.breaker.record_failure()
            self._observe(started, "server_error")
            raise error_from_response(self.peer, response)
        self.breaker.record_success()
        self._observe(started, "ok" if response.status_code < 400 else "client_error")
        return response

    def _credentials(self, for_customer: bool) -> dict[str, str]:
        headers = self.signer.headers(self.peer) if self.signer is not None else {}
        if for_customer:
            assertion = g.get("customer_assertion") if has_request_context() else None
            if not assertion:  # a bug in this service, not the client's fault
                raise ApiError(500, "internal_error", "no customer context to act for")
            headers[c.HEADER_CUSTOMER_ASSERTION] = assertion
        return headers

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON body; any error becomes our own ApiError."""
        response = self.request(method, path, **kwargs)
        raise_for_error(self.peer, response)
        try:
            return response.json() if response.content else None
        except ValueError:
            raise ApiError(502, "dependency_error", f"{self.peer} answered with a body that is not JSON",
                           dependency=self.peer) from None


def _is_read_timeout(exc: HTTPError) -> bool:
    """A read timeout comes wrapped in MaxRetryError, since reads are never retried (read=0)."""
    if isinstance(exc, MaxRetryError):
        return isinstance(exc.reason, ReadTimeoutError)
    return isinstance(exc, ReadTimeoutError)


def error_from_response(peer: str, response: PeerResponse) -> ApiError:
    """The peer's own JSON error, kept as is: it names the root cause (e.g. *its* dependency
    that is down). A 5xx without one becomes a 502 naming the peer."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error") in INTERNAL_AUTH_ERRORS:
        # Our own credentials were refused: a deployment problem (keys, topology), never the client's.
        log.error("a peer refused this service's credentials",
                  extra={"peer": peer, "status": response.status_code, "error": body.get("error")})
        return ApiError(502, "dependency_error", f"{peer} refused this service's call", dependency=peer)
    if isinstance(body, dict) and "error" in body:
        details = {k: v for k, v in body.items() if k not in ("error", "message")}
        if response.status_code >= 500:
            details.setdefault("dependency", peer)
        return ApiError(response.status_code, str(body["error"]), str(body.get("message", "")), **details)
    if response.status_code >= 500:
        return ApiError(502, "dependency_error", f"{peer} failed with HTTP {response.status_code}",
                        dependency=peer)
    return ApiError(response.status_code, "request_failed", f"{peer} answered HTTP {response.status_code}")


def raise_for_error(peer: str, response: PeerResponse) -> None:
    """Re-raise a peer's 4xx as our own answer (its JSON error body already explains it)."""
    if response.status_code >= 400:
        raise error_from_response(peer, response)
