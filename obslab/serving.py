"""The one way to start a component: ``obslab serve NAME`` runs its app under gunicorn.

One worker process with threads: prometheus-client keeps metrics (and exemplars) in process
memory, which several worker processes would split. The app is built inside the worker, after
the fork, so the span exporter's thread belongs to the process that serves requests.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from obslab import conventions as c
from obslab import settings

FACTORIES: dict[str, str] = {
    c.GATEWAY: "obslab.services.gateway.app:create_app",
    c.AUTH: "obslab.services.auth.app:create_app",
    c.ACCOUNTS: "obslab.services.accounts.app:create_app",
    c.TRANSACTIONS: "obslab.services.transactions.app:create_app",
    c.PAYMENTS: "obslab.services.payments.app:create_app",
    c.FRAUD: "obslab.services.fraud.app:create_app",
    c.NOTIFICATIONS: "obslab.services.notifications.app:create_app",
    c.TRACE_SINK: "obslab.native.trace_sink:create_app",
    c.FAULT_INJECTOR: "obslab.services.fault_injector.app:create_app",
    c.IIS_MOCK: "obslab.iis_mock.exporter:create_app",
    c.ALERT_RECEIVER: "obslab.services.alert_receiver.app:create_app",
    c.DDOS_DETECTOR: "obslab.ml.ddos.service:create_app",
    c.BASELINER: "obslab.ml.baseliner:create_app",
}
# Components that are not WSGI apps: a callable that runs in the foreground until SIGTERM.
RUNNERS: dict[str, str] = {
    c.LOAD_GENERATOR: "obslab.services.loadgen.runner:serve",
}


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


def _logconfig(name: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "obslab.telemetry.logs.JsonFormatter", "service": name}},
        # The names gunicorn's own defaults refer to, so that its merge finds them.
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
            "error_console": {"class": "logging.StreamHandler", "formatter": "json",
                              "stream": "ext://sys.stdout"},
        },
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            # The app logs every request itself, with its trace id; gunicorn's line would repeat it.
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


def _worker_exit(_server: Any, _worker: Any) -> None:
    from obslab.telemetry import shutdown_tracing

    shutdown_tracing()


class _Server(BaseApplication):
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return factory(self.name)()


def serve(name: str, host: str | None = None, port: int | None = None) -> None:
    if name not in RUNNERS:
        factory(name)  # fail fast on an unknown name, before gunicorn starts
    bind_host = host or os.environ.get("OBSLAB_BIND_HOST") or settings.host()
    bind_port = port if port is not None else settings.port(name)
    if name in RUNNERS:
        _load(RUNNERS[name])(host=bind_host, port=bind_port)
        return
    _Server(name, {
        "bind": f"{bind_host}:{bind_port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": settings.int_setting("OBSLAB_THREADS", 16, minimum=1),
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,   # the app logs each request as JSON, with its trace id
        "errorlog": "-",
        "logconfig_dict": _logconfig(name),
        "proc_name": f"obslab-{name}",
        "control_socket_disable": True,
        "worker_exit": _worker_exit,
    }).run()
