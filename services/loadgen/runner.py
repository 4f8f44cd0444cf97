"""``obslab serve load-generator``: the lab's background traffic, until SIGTERM.

Settings come from the environment (see :mod:`obslab.services.loadgen.config`); the gateway and
accounts URLs follow the lab's ports. ``/health`` answers at once, before any customer exists,
so the lab's start-up does not wait for customer setup (which waits for the gateway).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from obslab import conventions as c
from obslab.faults.board import process_board
from obslab.services.loadgen.config import LoadConfig
from obslab.services.loadgen.generator import LoadGenerator
from obslab.services.loadgen.server import MetricsServer
from obslab.services.loadgen.status import status_line
from obslab.telemetry import configure_logging

log = logging.getLogger(__name__)

STATUS_LOG_SECONDS = 60.0


def health(generator: LoadGenerator) -> dict[str, Any]:
    population = generator.population
    return {
        "phase": generator.phase,
        "users_ready": len(population.ready),
        "users_failed": len(population.failed),
        "users_wanted": len(population.identities),
        "target_journeys_per_second": round(generator.current_target, 3),
        "flood": generator.flood.describe(),
        "last_setup_error": population.last_error,
    }


def current_status(generator: LoadGenerator) -> str:
    started = generator.started_at or time.monotonic()
    return status_line(
        generator.recorder.snapshot(), elapsed=time.monotonic() - started, target=generator.current_target,
        phase=generator.phase, users=f"{len(generator.population.ready)}/{len(generator.population.identities)}",
        flood=generator.flood.describe(),
    )


def serve(host: str, port: int) -> None:
    configure_logging(c.LOAD_GENERATOR)
    config = LoadConfig.from_environment()
    board = process_board()
    generator = LoadGenerator(config, board=board)
    server = MetricsServer(generator.recorder.metrics.registry, host, port, health=lambda: health(generator))
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server.start()
    board.start()
    generator.start()
    log.info("load generator started", extra={
        "gateway": config.gateway_url, "rate": config.rate, "flat": config.flat, "users": config.users,
        "concurrency": config.concurrency, "mix": config.mix.describe(), "metrics": server.url,
    })
    last_status = time.monotonic()
    while not stop.wait(1.0):
        if time.monotonic() - last_status >= STATUS_LOG_SECONDS:
            last_status = time.monotonic()
            log.info(current_status(generator))
    # Customers mid-journey are simply abandoned: a stopping lab has no use for their last steps.
    generator.stop(drain=False)
    server.stop()
    board.stop()
    log.info("load generator stopped")
