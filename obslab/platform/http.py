"""Calls from one service to another: timeouts, a circuit breaker, metrics, clear failures.

Trace context travels in the ``traceparent`` header, injected by the requests instrumentation.
Connection errors are retried (the request never left, so any method is safe); read timeouts
and 5xx are not, because the peer may have acted. A dependency that is down becomes an
:class:`ApiError` (503/504) naming the peer, so callers answer with a useful error, not a 500.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import requests
from flask import g, has_request_context
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from obslab import conventions as c
from obslab import settings
from obslab.platform.breaker import BreakerState, CircuitBreaker, CircuitOpenError
from obslab.platform.errors import ApiError
from obslab.platform.identity import INTERNAL_AUTH_ERRORS, Signer
from obslab.telemetry import MetricSet

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 1.0


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
        self.session = requests.Session()
        # Peers are addressed directly: no proxy, netrc or CA-bundle lookups from the environment
        # on every call (they cost a visible share of each request's CPU).
        self.session.trust_env = False
        # Connection failures only; a peer's 429/503 with Retry-After is its answer to pass on, not
        # something to sleep on and retry here (urllib3 would otherwise, even with status=0).
        retry = Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0,
                      backoff_factor=0.05, allowed_methods=None, respect_retry_after_header=False)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

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
    ) -> requests.Response:
        """Send a request; 2xx-4xx responses are returned, technical failures raise ApiError.

        ``for_customer``: the call acts for the customer of the request being served, so the
        gateway's assertion travels along (only to peers that act on a customer's money)."""
        headers = {**(headers or {}), **self._credentials(for_customer)}
        try:
            self.breaker.before_call()
        except CircuitOpenError:
            self._observe(time.perf_counter(), "circuit_open")
            raise ApiError(503, "dependency_unavailable",
                           f"{self.peer} is failing; calls are paused (circuit breaker open)",
                           dependency=self.peer) from None
        started = time.perf_counter()
        try:
            response = self.session.request(
                method, self.base_url + path, json=json, data=data, params=params, headers=headers,
                timeout=(CONNECT_TIMEOUT, timeout or self.timeout),
            )
        except requests.RequestException as exc:
            self.breaker.record_failure()
            if _is_read_timeout(exc):
                self._observe(started, "timeout")
                raise ApiError(504, "dependency_timeout", f"{self.peer} did not answer in time",
                               dependency=self.peer) from None
            self._observe(started, "unreachable")
            log.warning("dependency unreachable", extra={"peer": self.peer, "error": str(exc)})
            raise ApiError(503, "dependency_unavailable", f"{self.peer} is unreachable",
                           dependency=self.peer) from None
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
        return response.json() if response.content else None


def _is_read_timeout(exc: requests.RequestException) -> bool:
    """requests reports a read timeout as ConnectionError when a urllib3 Retry is mounted."""
    if isinstance(exc, requests.Timeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, ReadTimeoutError)


def error_from_response(peer: str, response: requests.Response) -> ApiError:
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


def raise_for_error(peer: str, response: requests.Response) -> None:
    """Re-raise a peer's 4xx as our own answer (its JSON error body already explains it)."""
    if response.status_code >= 400:
        raise error_from_response(peer, response)
