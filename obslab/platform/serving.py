"""The one way to start a component: ``obslab serve NAME`` runs its app under waitress.

One process with threads: prometheus-client keeps metrics (and exemplars) in process memory,
which several worker processes would split.

Why waitress: its event loop reads each request whole (headers and body, spooled to a temporary
file when large) before a worker thread sees it. A client that sends half a header, or trickles
its body, holds a file descriptor and nothing else; with gunicorn's gthread worker, 20 such
sockets took all 16 threads and /health stopped answering for over 30 s. The same server runs in
both runtimes (compose uses this image), so there is one fix to test, not a proxy per runtime.
"""

from __future__ import annotations

import importlib
import logging
import os
import resource
import signal
import threading
from collections.abc import Callable
from typing import Any

import waitress
from flask import Flask

from obslab import settings, topology

log = logging.getLogger(__name__)

CHANNEL_TIMEOUT_SECONDS = 30
MAX_HEADER_BYTES = 32 * 1024
SHUTDOWN_SECONDS = 10.0
# Waitress's own stop (5 s), the hooks and the span flush stay inside compose's 20 s grace.
SHUTDOWN_HOOK_SECONDS = 3.0
BODY_SLACK_BYTES = 1024 * 1024

# From the component table (obslab/topology.py, each component's ``entry``).
FACTORIES: dict[str, str] = {comp.name: comp.entry for comp in topology.ALL if comp.entry and not comp.runner}
# Components that are not WSGI apps: a callable that runs in the foreground until SIGTERM.
RUNNERS: dict[str, str] = {comp.name: comp.entry for comp in topology.ALL if comp.entry and comp.runner}


def _load(reference: str) -> Callable:
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def factory(name: str) -> Callable[[], Flask]:
    try:
        return _load(FACTORIES[name])
    except KeyError:
        raise settings.ConfigError(
            f"unknown component {name!r}; choose one of: {', '.join([*FACTORIES, *RUNNERS])}"
        ) from None


def _raise_open_files_limit() -> int:
    """Every held connection is a file descriptor: allow as many as the hard limit lets us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def _stop_on(signum: int, _frame: Any) -> None:
    # Raised in the main thread, inside waitress's loop, which catches it and returns after
    # joining its worker threads (run() then simply returns).
    raise SystemExit(128 + signum)


def server_options(app: Flask) -> dict[str, Any]:
    """How waitress serves ``app``: whole requests buffered before a thread sees them, bounded."""
    body_limit = app.config.get("MAX_CONTENT_LENGTH") or 1024 * 1024
    return {
        "threads": settings.THREADS.get(),
        "connection_limit": settings.CONNECTION_LIMIT.get(),
        # Idle and stalled connections are dropped; a slow one never held a thread anyway.
        "channel_timeout": CHANNEL_TIMEOUT_SECONDS,
        "cleanup_interval": 5,
        "max_request_header_size": MAX_HEADER_BYTES,
        # The app answers 413 as JSON just above its own limit; far above it, waitress refuses
        # (plain text) before buffering more than this for a request nobody has authenticated yet.
        "max_request_body_size": body_limit + max(body_limit, BODY_SLACK_BYTES),
        "asyncore_use_poll": True,   # select() stops at 1024 descriptors
        # The gateway decides itself whom to believe about X-Forwarded-For (services/gateway/edge.py).
        "clear_untrusted_proxy_headers": False,
        "ident": "",                 # no Server header naming the software
        "expose_tracebacks": False,
    }


def serve(name: str, host: str | None = None, port: int | None = None) -> None:
    if name not in RUNNERS:
        factory(name)  # fail fast on an unknown name, before anything starts
    bind_host = host or settings.BIND_HOST.get() or settings.host()
    bind_port = port if port is not None else settings.port(name)
    # What this component writes (its database, its model) is its user's alone.
    os.umask(0o077)
    if name in RUNNERS:
        _load(RUNNERS[name])(host=bind_host, port=bind_port)
        return
    try:
        app = factory(name)()
    except BaseException:
        from obslab.telemetry import discard_tracing

        discard_tracing()        # it never served: the error goes out now, not after export retries
        raise
    _raise_open_files_limit()
    server = waitress.create_server(app, host=bind_host, port=bind_port, **server_options(app))
    signal.signal(signal.SIGTERM, _stop_on)
    signal.signal(signal.SIGINT, _stop_on)
    log.info("serving", extra={"component": name, "address": f"{bind_host}:{bind_port}"})
    status = 0
    try:
        server.run()   # until SIGTERM/SIGINT: waitress turns our SystemExit into an orderly close
    except BaseException:
        log.exception("the server stopped unexpectedly")
        status = 1
    finally:
        _run_shutdown_hooks(app)
        _exit_after_flushing_spans(status)


def _run_shutdown_hooks(app: Flask) -> None:
    """What the service still holds in memory (the gateway's queued audit records), each hook
    bounded: a database that hangs must not keep a stopping component alive."""
    context = app.extensions.get("obslab")
    for hook in getattr(context, "shutdown_hooks", ()):
        runner = threading.Thread(target=_logged(hook), name="shutdown-hook", daemon=True)
        runner.start()
        runner.join(timeout=SHUTDOWN_HOOK_SECONDS)


def _logged(hook: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            hook()
        except Exception:
            log.exception("a shutdown hook failed", extra={"hook": getattr(hook, "__qualname__", repr(hook))})
    return run


def _exit_after_flushing_spans(status: int) -> None:
    """Flush the queued spans for a bounded time, then end the process: an exporter retrying
    against a collector that hangs must not keep a stopping component alive (compose gives a
    container 20 s; see obslab/generators/compose.py)."""
    from obslab.telemetry import shutdown_tracing

    flusher = threading.Thread(target=shutdown_tracing, name="span-flush", daemon=True)
    flusher.start()
    flusher.join(timeout=SHUTDOWN_SECONDS)
    logging.shutdown()
    os._exit(status)
