"""A whole native lab with its weather: traffic from the load generator, faults set with
`obslab fault` through the real fault-injector, and their effects seen with real requests and
in the real Prometheus's scrapes, until they are cleared or expire."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import requests

from obslab import conventions as c
from obslab.lab.supervisor import Supervisor
from tests.integration.lab import RunningLab, eventually, free_offset, start_lab

pytestmark = [pytest.mark.lab, pytest.mark.serial, pytest.mark.usefixtures("untraced_client")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, untraced_client):
    assert shutil.which("prometheus"), "prometheus is missing: run `obslab doctor --install`"
    running = start_lab(tmp_path_factory.mktemp("weather") / "data", free_offset(23_000))
    yield running
    running.stop()


def fault_cli(lab: RunningLab, *args: str):
    """`obslab fault ...` as a user types it; it finds the lab's injector by the port offset."""
    return lab.fault(*args)


def test_every_component_of_the_lab_is_healthy_including_traffic_and_the_control_plane(lab):
    result = lab.run("status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    names = {item["name"] for item in json.loads(result.stdout)["components"]}
    assert {c.FAULT_INJECTOR, c.IIS_MOCK, c.LOAD_GENERATOR, c.PROMETHEUS, *c.BANKING_SERVICES} <= names


def test_the_load_generator_drives_every_journey_through_the_gateway_from_many_clients(lab):
    eventually(lambda: (lab.value(f'sum({c.LOADGEN_REQUESTS.name}{{outcome="ok"}})') or 0) >= 30,
               120, "load generator requests answered ok")
    transfers = eventually(lambda: lab.value(f'sum({c.TRANSACTION_REQUESTS.name}{{type="transfer"}})'),
                           120, "transfers recorded by the transactions service")
    assert transfers >= 1
    clients = eventually(lambda: (lab.value(c.GATEWAY_ACTIVE_CLIENTS.name) or 0) >= 5, 60,
                         "several distinct client addresses at the gateway")
    assert clients


def test_a_latency_fault_set_with_the_cli_slows_the_real_service_until_it_is_cleared(lab):
    alice = lab.login("alice")

    def timed() -> float:
        started = time.perf_counter()
        assert alice.get(f"{lab.api}/accounts", timeout=10).status_code == 200
        return time.perf_counter() - started

    baseline = min(timed() for _ in range(3))
    injected = lab.set_fault("latency", "accounts", "--latency-ms", "400", "--ttl", "3m")
    seen: list[float] = []
    eventually(lambda: seen.append(timed()) or seen[-1] >= baseline + 0.38, 20,
               lambda: f"slow accounts (baseline {baseline:.3f} s, seen {[round(t, 3) for t in seen]})")
    eventually(lambda: lab.value(f'{c.FAULT_ACTIVE.name}{{fault="latency",target="accounts"}}') == 1, 30,
               "fault_active in Prometheus")
    lab.clear_fault(injected["id"])
    eventually(lambda: timed() < baseline + 0.25, 20, "accounts fast again")
    eventually(lambda: lab.value(f'{c.FAULT_ACTIVE.name}{{fault="latency",target="accounts"}}') is None, 30,
               "fault_active gone from Prometheus")


def test_an_iis_app_pool_crash_stops_the_pool_and_surges_503s_in_the_scrapes_until_cleared(lab):
    state = f'{c.IIS_APP_POOL_STATE.name}{{app_pool="OnlineBankingAppPool"}}'
    errors = f'rate({c.IIS_SERVER_ERRORS.name}{{site="OnlineBanking"}}[10s])'
    eventually(lambda: lab.value(state) == c.IIS_APP_POOL_RUNNING, 60, "pool running before the crash")
    injected = lab.set_fault("app_pool_crash", "OnlineBankingAppPool", "--ttl", "3m")
    eventually(lambda: lab.value(state) == c.IIS_APP_POOL_STOPPED, 30, "pool stopped")
    eventually(lambda: (lab.value(errors) or 0) > 20, 30, "5xx surge on the site")
    lab.clear_fault(injected["id"])
    eventually(lambda: lab.value(state) == c.IIS_APP_POOL_RUNNING, 30, "pool running again")


def test_a_ddos_flood_brings_many_new_clients_and_ends_by_itself_when_it_expires(lab):
    before = lab.value(c.GATEWAY_ACTIVE_CLIENTS.name) or 0
    lab.set_fault("ddos_flood", "gateway", "--rps", "60", "--sources", "400", "--ttl", "25s")
    eventually(lambda: (lab.value(c.LOADGEN_FLOOD_RATE.name) or 0) > 10, 30, "flood running")
    eventually(lambda: (lab.value(c.GATEWAY_ACTIVE_CLIENTS.name) or 0) > before + 100, 40,
               "flood sources at the gateway")
    eventually(lambda: lab.value(c.LOADGEN_FLOOD_RATE.name) == 0, 45, "flood over after expiry")
    listed = fault_cli(lab, "list", "--json")
    assert json.loads(listed.stdout) == []


def test_the_services_keep_serving_when_the_fault_injector_is_down(lab):
    supervisor = Supervisor(lab.data_dir)
    supervisor.stop_program(c.FAULT_INJECTOR)
    try:
        with pytest.raises(requests.ConnectionError):
            requests.get(lab.url(c.FAULT_INJECTOR) + "/health", timeout=2)
        alice = lab.login("alice")
        for _ in range(5):
            assert alice.get(f"{lab.api}/accounts", timeout=5).status_code == 200
        down = fault_cli(lab, "list")
        assert down.returncode == 2 and "not reachable" in down.stderr
    finally:
        supervisor.start_program(c.FAULT_INJECTOR)
    eventually(lambda: fault_cli(lab, "list").returncode == 0, 30, "injector back")
