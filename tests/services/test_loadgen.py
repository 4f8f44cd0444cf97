"""The load generator against the real in-process stack (SQLite, loopback HTTP).

One stack for the module; each test uses its own customer prefix where money is counted, so
balances start from known opening deposits.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from obslab import conventions as c
from obslab.cli import load as loadgen_cli
from obslab.faults.board import FaultBoard, process_board
from obslab.faults.model import Fault
from obslab.services.loadgen.config import LoadConfig
from obslab.services.loadgen.generator import LoadGenerator
from obslab.services.loadgen.mix import JOURNEYS, JourneyMix
from obslab.services.loadgen.server import MetricsServer
from tests.support import free_port, start_stack

EVERY_JOURNEY = JourneyMix({name: 1 for name in JOURNEYS})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    directory = tmp_path_factory.mktemp("loadgen-stack")
    with pytest.MonkeyPatch.context() as env:
        # Argon2 at its cheapest: customer setup and logins are the test's bulk otherwise.
        env.setenv("OBSLAB_ARGON2_TIME_COST", "1")
        env.setenv("OBSLAB_ARGON2_MEMORY_KIB", "1024")
        running = start_stack(lambda service: f"sqlite:///{directory / f'{service}.sqlite3'}")
    yield running
    running.stop()


def _config(stack, **overrides) -> LoadConfig:
    values = dict(gateway_url=stack.url(c.GATEWAY), accounts_url=stack.url(c.ACCOUNTS), users=12, rate=20.0,
                  flat=True, think_time=0.02, concurrency=8, timeout=20.0)
    values.update(overrides)
    return LoadConfig(**values)


def _samples(url: str) -> dict[tuple[str, frozenset], float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _total(samples, name: str, **match: str) -> float:
    return sum(value for (sample, labels), value in samples.items()
               if sample == name and all((k, v) in labels for k, v in match.items()))


def _gateway_api_requests(stack) -> float:
    return sum(value for (name, labels), value in _samples(stack.url(c.GATEWAY)).items()
               if name == c.HTTP_SERVER_REQUESTS.name and dict(labels).get("route", "").startswith(c.API_PREFIX))


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _balances(stack, config: LoadConfig, usernames: list[str]) -> dict[str, Decimal]:
    api = stack.url(c.GATEWAY) + c.API_PREFIX
    result = {}
    for username in usernames:
        token = requests.post(f"{api}/auth/login", json={"username": username, "password": config.password},
                              timeout=10).json()["access_token"]
        for account in requests.get(f"{api}/accounts", headers={"Authorization": f"Bearer {token}"},
                                    timeout=10).json():
            result[account["id"]] = Decimal(account["balance"])
    return result


def _history(stack, config: LoadConfig, username: str, account: str) -> list[dict]:
    api = stack.url(c.GATEWAY) + c.API_PREFIX
    token = requests.post(f"{api}/auth/login", json={"username": username, "password": config.password},
                          timeout=10).json()["access_token"]
    return requests.get(f"{api}/transfers", params={"account": account, "limit": 200},
                        headers={"Authorization": f"Bearer {token}"}, timeout=10).json()


def test_a_bounded_run_completes_every_journey_moves_real_money_and_replays_retries(stack):
    config = _config(stack, user_prefix="lgmoney-", mix=EVERY_JOURNEY, max_requests=350, retry_share=0.3)
    generator = LoadGenerator(config, journal=True)
    server = MetricsServer(generator.recorder.metrics.registry, "127.0.0.1", 0).start()
    gateway_before = _gateway_api_requests(stack)
    try:
        generator.start()
        assert generator.drained.wait(90), "the bounded run did not finish"
        generator.stop()
        gateway_after = _gateway_api_requests(stack)
        samples = _samples(server.url)
    finally:
        generator.stop(drain=False)
        server.stop()

    snap = generator.recorder.snapshot()
    assert snap.requests >= 350
    finished = {kind for (kind, outcome), n in snap.journeys.items() if outcome == "ok" and n}
    assert finished == set(JOURNEYS)
    assert snap.journeys_by_outcome().get("error", 0) == 0, snap.journeys
    assert snap.replays >= 3 and snap.replay_mismatches == 0

    # The generator's metrics count exactly what the gateway received (deposits go to accounts).
    sent_to_gateway = sum(value for (name, labels), value in samples.items()
                          if name == c.LOADGEN_REQUESTS.name and not dict(labels)["step"].endswith("deposit"))
    assert sent_to_gateway == gateway_after - gateway_before
    assert _total(samples, c.LOADGEN_REQUESTS.name) == snap.requests + snap.setup_requests
    assert _total(samples, c.LOADGEN_JOURNEYS.name) == sum(snap.journeys.values())
    assert _total(samples, c.LOADGEN_DURATION.name + "_count") == snap.requests + snap.setup_requests
    assert _total(samples, c.LOADGEN_USERS.name) == config.users

    # Every balance is its opening deposit plus what the journal says moved, to the cent.
    users = generator.population.ready
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for user in users:
        expected[user.accounts["checking"]] += user.identity.opening_checking
        if "savings" in user.accounts:
            expected[user.accounts["savings"]] += user.identity.opening_savings
    completed = {"transfer": 0, "payment": 0}
    for movement in generator.journal:
        if movement["status"] != "completed":
            continue
        if movement["kind"] == "deposit":
            expected[movement["to"]] += movement["amount"]
            continue
        completed[movement["kind"]] += 1
        expected[movement["from"]] -= movement["amount"]
        if movement["kind"] == "transfer":
            expected[movement["to"]] += movement["amount"]
    assert completed["transfer"] >= 5 and completed["payment"] >= 5
    actual = _balances(stack, config, [u.username for u in users])
    assert {account: actual[account] for account in expected} == dict(expected)

    # A retried key is one transfer: the history shows each journal transfer exactly once.
    retried = [m for m in generator.journal if m["kind"] == "transfer" and m["retried"] and m["id"]]
    assert retried
    owner = {account: user.username for user in users for account in user.accounts.values()}
    for movement in retried:
        ids = [t["id"] for t in _history(stack, config, owner[movement["from"]], movement["from"])]
        assert ids.count(movement["id"]) == 1


def test_a_volume_surge_raises_the_achieved_journey_rate(stack):
    board = FaultBoard(None)
    config = _config(stack, rate=5.0, think_time=0.0, concurrency=16, mix=JourneyMix({"check_balances": 1}))
    generator = LoadGenerator(config, board=board)
    try:
        generator.start()
        _wait_for(lambda: len(generator.population.ready) == config.users, 30, "customers")
        time.sleep(0.5)

        def starts_during(seconds: float) -> int:
            before = generator.recorder.snapshot().started
            time.sleep(seconds)
            return generator.recorder.snapshot().started - before

        base = starts_during(4.0)
        now = time.time()
        board.replace([Fault(id="flt_surge", kind=c.FaultKind.VOLUME_SURGE, target=c.GATEWAY,
                             params={"factor": 4.0}, created_at=now, expires_at=now + 60)])
        time.sleep(0.5)
        assert generator.recorder.metrics.registry.get_sample_value(c.LOADGEN_TARGET_RATE.name) == pytest.approx(20.0)
        surged = starts_during(4.0)
    finally:
        generator.stop(drain=False)
    assert 8 <= base <= 35                # Poisson around 20
    assert surged > 2 * base              # around 4x


def test_a_ddos_flood_comes_from_many_sources_and_stops_when_the_fault_clears(stack):
    board = FaultBoard(None)
    config = _config(stack, rate=0.0, users=2, flood_ramp_seconds=1.0, flood_threads=6)
    generator = LoadGenerator(config, board=board)
    now = time.time()
    board.replace([Fault(id="flt_flood", kind=c.FaultKind.DDOS_FLOOD, target=c.GATEWAY,
                         params={"rps": 150, "sources": 600}, created_at=now, expires_at=now + 60)])
    clients_before = _total(_samples(stack.url(c.GATEWAY)), c.GATEWAY_ACTIVE_CLIENTS.name)
    try:
        generator.start()
        _wait_for(lambda: generator.flood.active, 5, "the flood to start")
        # ~3 s at 150/s; waiting for a count, not a time, keeps a busy machine from failing it.
        _wait_for(lambda: generator.recorder.snapshot().flood_requests >= 400, 30, "400 flood requests")
        gateway = _samples(stack.url(c.GATEWAY))
        achieved = generator.flood.achieved
        board.replace([])
        _wait_for(lambda: not generator.flood.active, 2, "the flood to stop")
        time.sleep(1.0)
        after_stop = _gateway_api_requests(stack)
        time.sleep(1.5)
        later = _gateway_api_requests(stack)
    finally:
        generator.stop(drain=False)
    # Distinct X-Forwarded-For sources the gateway saw; 400 Zipf draws from 600 bots give ~150.
    assert _total(gateway, c.GATEWAY_ACTIVE_CLIENTS.name) - clients_before >= 120
    assert achieved >= 30                                       # 150/s asked; a busy 2-core box gets less
    assert generator.recorder.metrics.registry.get_sample_value(c.LOADGEN_FLOOD_RATE.name) == 0
    assert later == after_stop                                  # nothing more reached the gateway
    assert generator.recorder.snapshot().started == 0          # rate 0: the flood alone


def test_an_overloaded_generator_drops_starts_instead_of_queueing_them(stack):
    board = process_board()   # the gateway in this process reads its faults from here
    config = _config(stack, rate=40.0, concurrency=1, think_time=0.0, mix=JourneyMix({"check_balances": 1}))
    generator = LoadGenerator(config)
    try:
        generator.start()
        _wait_for(lambda: len(generator.population.ready) == config.users, 30, "customers")
        now = time.time()
        board.replace([Fault(id="flt_slow", kind=c.FaultKind.LATENCY, target=c.GATEWAY,
                             params={"latency_ms": 200}, created_at=now, expires_at=now + 30)])
        before = generator.recorder.snapshot()
        time.sleep(3.0)
        after = generator.recorder.snapshot()
    finally:
        board.replace([])
        generator.stop(drain=False)
    dropped = after.journeys_by_outcome()["dropped"] - before.journeys_by_outcome().get("dropped", 0)
    started = after.started - before.started
    assert dropped > started            # one worker at >= 0.2 s a request cannot serve 40 starts/s
    assert started + dropped >= 60      # the starts kept coming (open loop)


def test_obslab_load_runs_a_bounded_run_and_prints_a_summary(stack):
    parser = argparse.ArgumentParser()
    loadgen_cli.add_arguments(parser)
    args = parser.parse_args([
        "--gateway", stack.url(c.GATEWAY), "--accounts-url", stack.url(c.ACCOUNTS), "--users", "4",
        "--rate", "20", "--flat", "--think-time", "0.01", "--requests", "40", "--metrics-port", str(free_port()),
        "--fault-injector", "http://127.0.0.1:9",
    ])
    out = io.StringIO()
    assert loadgen_cli.run(args, out=out) == 0
    text = out.getvalue()
    assert "Load on" in text and "Load run finished" in text and "(40 requests sent)" in text
    assert "\r" not in text                 # not a terminal: no in-place status line


def test_obslab_load_says_in_one_line_when_the_gateway_cannot_be_reached():
    from obslab.errors import CliError

    parser = argparse.ArgumentParser()
    loadgen_cli.add_arguments(parser)
    args = parser.parse_args(["--gateway", f"http://127.0.0.1:{free_port()}", "--requests", "5"])
    with pytest.raises(CliError, match="cannot reach the gateway at http://127.0.0.1:") as raised:
        loadgen_cli.run(args, out=io.StringIO())
    assert "\n" not in str(raised.value)


def test_the_lab_runner_answers_health_at_once_runs_journeys_and_stops_on_sigterm(stack):
    port = free_port()
    env = {**os.environ, "OBSLAB_GATEWAY_URL": stack.url(c.GATEWAY), "OBSLAB_ACCOUNTS_URL": stack.url(c.ACCOUNTS),
           "OBSLAB_LOAD_USERS": "3", "OBSLAB_LOAD_RATE": "5", "OBSLAB_LOAD_FLAT": "1",
           "OBSLAB_LOAD_THINK_SECONDS": "0.2", "OBSLAB_LOAD_USER_PREFIX": "lgrunner-", "OTEL_SDK_DISABLED": "true"}
    env.pop("OBSLAB_FAULT_INJECTOR_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "obslab", "serve", c.LOAD_GENERATOR, "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def health() -> dict:
        try:
            return requests.get(f"{url}/health", timeout=1).json()
        except requests.RequestException:
            return {}

    try:
        _wait_for(lambda: health().get("status") == "ok", 20, "the runner's /health")
        _wait_for(lambda: health().get("users_ready") == 3, 20, "customer setup")
        _wait_for(lambda: _total(_samples(url), c.LOADGEN_JOURNEYS.name, outcome="ok") >= 3, 20, "journeys")
        process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - stopping < 5
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate(timeout=5)[0]
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(e["message"] == "load generator started" for e in events)
    assert events[-1]["message"] == "load generator stopped"
