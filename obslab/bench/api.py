"""``obslab bench api``: end-to-end transfers through the gateway, telemetry on vs off.

Each mode gets its own fresh native lab (same machine, same profile, Prometheus scraping in
both); "off" sets ``OTEL_SDK_DISABLED=true`` so no span is created, instrumented or exported,
while Prometheus metrics stay on in both (they are part of every service's contract). Clients
are threads in this process moving 0.01 EUR back and forth between alice and bob.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from obslab import conventions as c
from obslab import topology
from obslab.lab.native import LabError, NativeLab
from obslab.lab.seed import demo_password
from obslab.profiles import FAST


@dataclass(frozen=True)
class RunFigures:
    transfers: int
    errors: int
    seconds: float
    transfers_per_second: float
    p50_ms: float
    p99_ms: float


@contextmanager
def _environment(**overrides: str):
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def _client(api: str, username: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    login = session.post(f"{api}/auth/login", json={"username": username, "password": demo_password()}, timeout=30)
    login.raise_for_status()
    session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    account = next(a["id"] for a in session.get(f"{api}/accounts", timeout=30).json() if a["type"] == "checking")
    return session, account


def measure(gateway_url: str, transfers: int, concurrency: int, warmup: int, progress) -> RunFigures:
    api = gateway_url + c.API_PREFIX
    parties = [_client(api, "alice"), _client(api, "bob")]
    local = threading.local()
    done = 0
    done_lock = threading.Lock()

    def one(index: int) -> tuple[float, bool]:
        if not hasattr(local, "sessions"):  # one connection pool per client thread
            local.sessions = [requests.Session() for _ in parties]
            for own, (shared, _) in zip(local.sessions, parties):
                own.headers.update(shared.headers)
        sender = index % 2
        session, source = local.sessions[sender], parties[sender][1]
        target = parties[1 - sender][1]
        started = time.perf_counter()
        response = session.post(f"{api}/transfers", json={
            "from_account": source, "to_account": target, "amount": "0.01", "currency": "EUR",
        }, headers={c.HEADER_IDEMPOTENCY_KEY: uuid.uuid4().hex}, timeout=30)
        return time.perf_counter() - started, response.status_code == 201

    def counted(index: int) -> tuple[float, bool]:
        nonlocal done
        result = one(index)
        with done_lock:
            done += 1
            if done % max(1, transfers // 10) == 0:
                progress(f"  {done}/{transfers} transfers")
        return result

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(warmup)))
        started = time.perf_counter()
        results = list(pool.map(counted, range(transfers)))
        elapsed = time.perf_counter() - started
    latencies = [latency * 1000 for latency, _ in results]
    return RunFigures(
        transfers=transfers, errors=sum(1 for _, ok in results if not ok), seconds=round(elapsed, 2),
        transfers_per_second=round(transfers / elapsed, 1),
        p50_ms=round(_percentile(latencies, 50), 1), p99_ms=round(_percentile(latencies, 99), 1),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transfers", type=int, default=1000, help="transfers per run (default: 1000)")
    parser.add_argument("--concurrency", type=int, default=8, help="parallel clients (default: 8)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed transfers first (default: 100)")
    parser.add_argument("--port-offset", type=int, default=20000,
                        help="ports of the labs the benchmark starts = defaults + this (default: 20000; every "
                             "port stays below the kernel's ephemeral range)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the figures")


def run(args: argparse.Namespace) -> int:
    return run_api_benchmark(transfers=args.transfers, concurrency=args.concurrency, warmup=args.warmup,
                             port_offset=args.port_offset, as_json=args.json)


def run_api_benchmark(*, transfers: int, concurrency: int, warmup: int, port_offset: int,
                      as_json: bool) -> int:
    if transfers < 10 or concurrency < 1 or warmup < 0:
        raise LabError("--transfers must be >= 10, --concurrency >= 1 and --warmup >= 0")

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    figures: dict[str, RunFigures] = {}
    for mode, overrides in (("telemetry_on", {"OTEL_SDK_DISABLED": "false"}),
                            ("telemetry_off", {"OTEL_SDK_DISABLED": "true"})):
        with tempfile.TemporaryDirectory(prefix="obslab-bench-") as directory, _environment(**overrides):
            lab = NativeLab(Path(directory) / "data", offset=port_offset, profile=FAST, out=sys.stderr)
            progress(f"[{mode}] starting a fresh lab (ports +{port_offset}) ...")
            try:
                if lab.up(detach=True, timeout=120) != 0:
                    raise LabError(f"the benchmark lab did not become healthy ({mode}); see the table above")
                progress(f"[{mode}] {warmup} warm-up + {transfers} timed transfers, {concurrency} clients")
                figures[mode] = measure(f"http://127.0.0.1:{topology.DEFAULT_PORTS[c.GATEWAY] + port_offset}",
                                        transfers, concurrency, warmup, progress)
            finally:
                lab.down()
    on, off = figures["telemetry_on"], figures["telemetry_off"]
    ratio = {
        "transfers_per_second": round(on.transfers_per_second / off.transfers_per_second, 3),
        "p50_ms": round(on.p50_ms / off.p50_ms, 3),
        "p99_ms": round(on.p99_ms / off.p99_ms, 3),
    }
    if as_json:
        print(json.dumps({"transfers": transfers, "concurrency": concurrency,
                          "telemetry_on": asdict(on), "telemetry_off": asdict(off), "on_off_ratio": ratio}))
        return 0
    print(f"\nobslab bench api: {transfers} transfers through the gateway, {concurrency} concurrent clients, "
          f"native lab on this machine ({os.cpu_count()} CPUs)")
    print(f"{'':16}{'transfers/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, run in (("telemetry on", on), ("telemetry off", off)):
        print(f"{name:16}{run.transfers_per_second:>12.1f}{run.p50_ms:>9.1f}{run.p99_ms:>9.1f}{run.errors:>8}")
    print(f"{'on / off':16}{ratio['transfers_per_second']:>12.3f}{ratio['p50_ms']:>9.3f}{ratio['p99_ms']:>9.3f}")
    return 0
