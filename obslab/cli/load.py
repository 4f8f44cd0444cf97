"""``obslab load``: run the journeys in the foreground, with a live status line and a summary.

Only the light modules are imported up front: ``obslab`` builds every subcommand's parser on
each start, and the generator's imports (telemetry, pydantic) would slow down every command.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from typing import TYPE_CHECKING, TextIO

from obslab import conventions as c
from obslab import settings
from obslab.errors import CliError
from obslab.services.loadgen.config import LoadConfig
from obslab.services.loadgen.mix import JOURNEYS, JourneyMix
from obslab.services.loadgen.transport import HttpClient, TransportError
from obslab.settings import ConfigError, parse_duration

if TYPE_CHECKING:
    from obslab.faults.board import FaultBoard
    from obslab.services.loadgen.generator import LoadGenerator
    from obslab.services.loadgen.server import MetricsServer

TTY_REFRESH_SECONDS = 0.5
PLAIN_STATUS_SECONDS = 10.0
# Without a single ready customer after this long, something is wrong that waiting will not fix.
SETUP_PATIENCE_SECONDS = 120.0


HELP = "run realistic user journeys against a gateway (what `up` runs in the background)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Numbers are read as text and checked in run(), so every mistake is one clear line.
    parser.add_argument("--gateway", metavar="URL",
                        help="gateway base URL (default: $OBSLAB_GATEWAY_URL or the lab's gateway)")
    parser.add_argument("--accounts-url", metavar="URL",
                        help="accounts service URL, to fund customers (default: $OBSLAB_ACCOUNTS_URL or the lab's)")
    parser.add_argument("--rate", metavar="R", help=f"base journey starts per second (default: "
                                                    f"{settings.LOAD_RATE.default:g}, ${settings.LOAD_RATE.name})")
    parser.add_argument("--concurrency", metavar="N", help=f"worker threads = requests in flight at most "
                                                           f"(default: {settings.LOAD_CONCURRENCY.default})")
    parser.add_argument("--users", metavar="N", help=f"simulated customers (default: {settings.LOAD_USERS.default})")
    parser.add_argument("--duration", metavar="TIME", help="stop after this long, e.g. 90s, 10m, 1h")
    parser.add_argument("--requests", metavar="N", help="stop after sending this many journey requests")
    parser.add_argument("--flat", action="store_true", default=None,
                        help="the base rate all day (default: busier in business hours)")
    parser.add_argument("--seed", metavar="N",
                        help=f"seed of customers, addresses and choices (default: {settings.LOAD_SEED.default})")
    parser.add_argument("--think-time", metavar="S", help=f"mean seconds a customer thinks between steps "
                                                          f"(default: {settings.LOAD_THINK_SECONDS.default:g})")
    parser.add_argument("--mix", metavar="W",
                        help=f"journey weights, e.g. transfer=50,pay=50 (journeys: {', '.join(JOURNEYS)})")
    parser.add_argument("--metrics-port", metavar="P",
                        help="serve /metrics here (default: the load generator's lab port if free; 0: any free port)")
    parser.add_argument("--fault-injector", metavar="URL",
                        help="follow volume_surge/ddos_flood faults from here "
                             "(default: $OBSLAB_FAULT_INJECTOR_URL, or the lab's if it answers)")


def _number(value: str | None, option: str, kind: type = float) -> float | int | None:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{option} must be {noun}, got {value!r}") from None


def config_from_arguments(args: argparse.Namespace) -> LoadConfig:
    if args.duration is not None and args.requests is not None:
        raise ConfigError("give either --duration or --requests, not both")
    return LoadConfig.from_environment(
        gateway_url=args.gateway,
        accounts_url=args.accounts_url,
        rate=_number(args.rate, "--rate"),
        concurrency=_number(args.concurrency, "--concurrency", int),
        users=_number(args.users, "--users", int),
        think_time=_number(args.think_time, "--think-time"),
        flat=args.flat,
        seed=_number(args.seed, "--seed", int),
        mix=JourneyMix.parse(args.mix) if args.mix is not None else None,
        duration=parse_duration(args.duration) if args.duration is not None else None,
        max_requests=_number(args.requests, "--requests", int),
    )


def _check_gateway(url: str) -> None:
    client = HttpClient(url, timeout=3.0)
    try:
        for attempt in range(3):
            try:
                client.request("GET", "/health")
                return
            except TransportError as exc:
                if attempt == 2:
                    raise CliError(f"cannot reach the gateway at {url} ({exc}); start the lab with "
                                   "`obslab up` or point --gateway at a running one") from None
                time.sleep(0.5)
    finally:
        client.close()


def _fault_board(url: str | None) -> FaultBoard:
    from obslab.faults.board import FaultBoard

    url = url or settings.FAULT_INJECTOR_URL.get()
    if url:
        return FaultBoard(url).start()
    # Standalone next to a running lab: follow its faults if its injector answers, else none.
    default = settings.service_url(c.FAULT_INJECTOR)
    probe = HttpClient(default, timeout=0.5)
    try:
        probe.request("GET", "/health")
    except TransportError:
        return FaultBoard(None)
    finally:
        probe.close()
    return FaultBoard(default).start()


def _metrics_server(port_text: str | None, generator: LoadGenerator) -> MetricsServer | None:
    from obslab.services.loadgen.runner import health
    from obslab.services.loadgen.server import MetricsServer

    host = settings.host()
    explicit = port_text is not None
    port = _number(port_text, "--metrics-port", int) if explicit else settings.port(c.LOAD_GENERATOR)
    if not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-port must be 0-65535, got {port}")
    try:
        return MetricsServer(generator.recorder.metrics.registry, host, port, health=lambda: health(generator)).start()
    except OSError as exc:
        if explicit:
            raise CliError(f"cannot serve metrics on {host}:{port} ({exc.strerror}); pass another --metrics-port") \
                from None
        return None   # the lab's own load generator probably has it; run without


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from obslab.services.loadgen.generator import LoadGenerator
    from obslab.services.loadgen.runner import current_status
    from obslab.services.loadgen.status import summary

    out = out or sys.stdout
    config = config_from_arguments(args)
    _check_gateway(config.gateway_url)
    if not logging.getLogger().handlers:
        # Library warnings (an unreachable fault injector ...) as one plain line, not a traceback.
        logging.basicConfig(level=logging.ERROR, format="obslab load: %(message)s")
    board = _fault_board(args.fault_injector)
    generator = LoadGenerator(config, board=board)
    try:
        server = _metrics_server(args.metrics_port, generator)
    except (CliError, ConfigError):
        board.stop()
        raise
    tty = out.isatty()
    bound = (f"for {args.duration}" if config.duration else
             f"for {config.max_requests} requests" if config.max_requests else "until Ctrl-C")
    shape = "flat" if config.flat else "diurnal shape"
    print(f"Load on {config.gateway_url} {bound}: {config.rate:g} journeys/s base ({shape}), "
          f"{config.users} customers, {config.concurrency} workers; mix {config.mix.describe()}; "
          f"metrics {server.url + '/metrics' if server else 'not served (port in use)'}; "
          f"faults {'followed' if board.injector_url else 'not followed'}.", file=out, flush=True)
    interrupted = False
    generator.start()
    started = time.monotonic()
    last_plain = started
    try:
        while not generator.drained.wait(TTY_REFRESH_SECONDS):
            population = generator.population
            if not population.ready and (population.done.is_set()
                                         or time.monotonic() - started > SETUP_PATIENCE_SECONDS):
                reason = next(iter(population.failed.values()), None) or population.last_error or "no answer"
                raise CliError(f"no simulated customer could be set up: {reason}")
            line = current_status(generator)
            if tty:
                width = shutil.get_terminal_size((120, 20)).columns - 1
                print("\r" + line[:width] + "\033[K", end="", file=out, flush=True)
            elif time.monotonic() - last_plain >= PLAIN_STATUS_SECONDS:
                last_plain = time.monotonic()
                print(line, file=out, flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        generator.stop(drain=not interrupted, timeout=30.0)
        if server is not None:
            server.stop()
        board.stop()
        if tty:
            print("\r\033[K", end="", file=out, flush=True)
    first = generator.traffic_started_at or started
    reason = "interrupted" if interrupted else generator.stop_reason
    print(summary(generator.recorder.snapshot(), elapsed=time.monotonic() - first, reason=reason), file=out,
          flush=True)
    return 0
