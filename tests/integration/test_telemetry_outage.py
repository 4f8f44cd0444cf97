"""Telemetry never breaks the business: with the OTLP endpoint refusing connections or hanging,
a real service (`obslab serve`) answers as fast as with telemetry healthy."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import requests

from obslab import conventions as c
from tests.support import free_port, service_headers

pytestmark = [pytest.mark.serial, pytest.mark.usefixtures("untraced_client")]

REQUESTS = 150
BODY = {"customer_id": "cus_outage", "kind": "transfer", "amount_minor": 1234, "currency": "EUR",
        "counterparty": "acc_aaaaaaaaaaaaaaaa", "reference": "trf_outage"}


@contextmanager
def blackhole():
    """A TCP port that accepts connections and never answers (the worst collector failure)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@contextmanager
def fraud_service(tmp_path, **otel_env):
    port = free_port()
    env = {**os.environ, "OBSLAB_DATA_DIR": str(tmp_path), "OTEL_BSP_SCHEDULE_DELAY": "50",
           "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8", **otel_env}
    process = subprocess.Popen([sys.executable, "-m", "obslab", "serve", "fraud", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def latencies(url: str) -> list[float]:
    session = requests.Session()
    session.headers.update(service_headers(c.TRANSACTIONS, c.FRAUD))   # fraud answers its callers only
    for _ in range(20):  # warm up connections and code paths
        session.post(f"{url}/assessments", json=BODY, timeout=5)
    samples = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = session.post(f"{url}/assessments", json=BODY, timeout=5)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


@pytest.mark.parametrize("failure", ["refused", "hanging"])
def test_requests_stay_fast_while_the_otlp_endpoint_is_down(tmp_path, failure):
    with fraud_service(tmp_path / "baseline", OTEL_TRACES_EXPORTER="none") as url:
        baseline = latencies(url)
    with blackhole() as hanging_endpoint:
        endpoint = hanging_endpoint if failure == "hanging" else f"http://127.0.0.1:{free_port()}"
        with fraud_service(tmp_path / failure, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint) as url:
            broken = latencies(url)
    # The exporter retries for up to 10 s per batch; none of that may reach a request.
    assert max(broken) < 1.0, f"slowest request {max(broken):.3f} s"
    assert p95(broken) < 2 * p95(baseline) + 0.02, (p95(baseline), p95(broken))
