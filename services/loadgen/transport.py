"""HTTP for the load generator: one keep-alive connection per thread, outcomes a client sees.

``http.client`` rather than requests: a flood sends thousands of requests per second from one
process, and requests' per-call overhead (and, in a process that traces, its instrumentation)
would cap the rate well below what the gateway can be made to suffer.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

OK = "ok"
CLIENT_ERROR = "client_error"
SERVER_ERROR = "server_error"
RATE_LIMITED = "rate_limited"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
OUTCOMES: tuple[str, ...] = (OK, CLIENT_ERROR, SERVER_ERROR, RATE_LIMITED, TIMEOUT, CONNECTION_ERROR)

# A reused keep-alive connection the server already closed fails like this before any answer;
# sending again on a fresh connection is what every HTTP client does.
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                     http.client.CannotSendRequest)


def outcome_of(status: int) -> str:
    """The ``outcome`` label of an answered request.

    >>> [outcome_of(s) for s in (201, 302, 404, 429, 503)]
    ['ok', 'ok', 'client_error', 'rate_limited', 'server_error']
    """
    if status == 429:
        return RATE_LIMITED
    if status >= 500:
        return SERVER_ERROR
    if status >= 400:
        return CLIENT_ERROR
    return OK


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float

    @property
    def outcome(self) -> str:
        return outcome_of(self.status)

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def error_code(self) -> str | None:
        data = self.json()
        return data.get("error") if isinstance(data, dict) else None


class TransportError(Exception):
    """No answer: ``outcome`` is ``timeout`` or ``connection_error``."""

    def __init__(self, outcome: str, detail: str, seconds: float) -> None:
        super().__init__(f"{outcome}: {detail}")
        self.outcome = outcome
        self.seconds = seconds


class HttpClient:
    """Requests to one base URL over a keep-alive connection per calling thread.

    >>> HttpClient("http://127.0.0.1:8080/", timeout=2).base_url
    'http://127.0.0.1:8080'
    """

    def __init__(self, base_url: str, timeout: float,
                 credentials: Callable[[], dict[str, str]] | None = None) -> None:
        """``credentials``: headers every request carries (the generator's service token)."""
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path_prefix = parts.path.rstrip("/")
        self.timeout = timeout
        # Connections are per thread and only ever touched by their thread: closing one under a
        # thread that is reading from it breaks http.client's internals.
        self._local = threading.local()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        self._local.conn = conn
        return conn, False

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        sent_headers = {"Accept": "application/json", **(self.credentials() if self.credentials else {}),
                        **(headers or {})}
        if body is not None:
            sent_headers.setdefault("Content-Type", "application/json")
        started = time.perf_counter()
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                conn.request(method, self.path_prefix + path, body=body, headers=sent_headers)
                response = conn.getresponse()
                data = response.read()
                if response.will_close:
                    self._drop(conn)
                return Reply(response.status, response.headers, data, time.perf_counter() - started)
            except _STALE_CONNECTION as exc:
                self._drop(conn)
                if reused and attempt == 1:
                    continue
                raise TransportError(CONNECTION_ERROR, type(exc).__name__, time.perf_counter() - started) from None
            except (TimeoutError, socket.timeout):
                self._drop(conn)
                raise TransportError(TIMEOUT, f"no answer within {self.timeout:g}s",
                                     time.perf_counter() - started) from None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self._drop(conn)
                raise TransportError(CONNECTION_ERROR, f"{type(exc).__name__}: {exc}",
                                     time.perf_counter() - started) from None
        raise AssertionError("unreachable")

    def request_json(self, method: str, path: str, payload: Any = None,
                     headers: dict[str, str] | None = None) -> Reply:
        body = None if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        return self.request(method, path, body=body, headers=headers)

    def close(self) -> None:
        """Close the calling thread's connection (it reconnects if it sends again)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._drop(conn)
