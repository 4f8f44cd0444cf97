"""The generator's own HTTP port: ``/metrics`` for Prometheus and ``/health`` for the lab.

The standard library's threading server is enough for two read-only routes scraped every few
seconds; the generator's threads are busy sending, not serving.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry

from obslab import __version__
from obslab import conventions as c
from obslab.telemetry import exposition


class MetricsServer:
    """Serves ``registry`` and a health document on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 health: Callable[[], dict[str, Any]] = dict) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, content_type = exposition(registry, self.headers.get("Accept"))
                    self._answer(200, body, content_type)
                elif path in ("/health", "/ready"):
                    document = {"status": "ok", "service": c.LOAD_GENERATOR, "version": __version__, **health()}
                    self._answer(200, json.dumps(document).encode(), "application/json")
                else:
                    self._answer(404, json.dumps({"error": "not_found", "message":
                                                  "the load generator serves /metrics and /health"}).encode(),
                                 "application/json")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # scrapes every few seconds would drown the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="loadgen-metrics", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
