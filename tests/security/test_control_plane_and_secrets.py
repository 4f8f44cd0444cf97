"""Attacks on the lab's control plane, its secrets, its files and its servers.

Each test is named after the attack it stops."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from obslab import conventions as c
from obslab import topology
from obslab import secrets, settings
from obslab.services.fault_injector.app import create_app as injector_app
from tests.support import PASSWORD, control_headers, serve

FAULTS = f"{c.API_PREFIX}/faults"
TAKE_DOWN = {"kind": "unavailable", "target": "accounts", "no_expiry": True}


@pytest.fixture(scope="module")
def injector(tmp_path_factory):
    server = serve(injector_app(f"sqlite:///{tmp_path_factory.mktemp('injector') / 'faults.sqlite3'}"))
    yield server.url
    requests.delete(f"{server.url}{FAULTS}", headers=control_headers(), timeout=5)
    server.stop()


# --- the control plane ------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-labs-token"},
                                     {"Authorization": "Basic b3BlcmF0b3I6cGFzcw=="}])
def test_a_stranger_cannot_take_the_bank_down_through_the_fault_injector(injector, headers):
    response = requests.post(f"{injector}{FAULTS}", json=TAKE_DOWN, headers=headers, timeout=5)
    assert response.status_code == 401 and response.json()["error"] in ("unauthenticated", "invalid_token")
    for method in ("GET", "DELETE"):
        assert requests.request(method, f"{injector}{FAULTS}", headers=headers, timeout=5).status_code == 401
    assert requests.get(f"{injector}{FAULTS}", headers=control_headers(), timeout=5).json() == []


def test_alertmanagers_token_cannot_drive_faults(injector):
    response = requests.post(f"{injector}{FAULTS}", json=TAKE_DOWN, headers=control_headers(topology.ALERTMANAGER_PRINCIPAL),
                             timeout=5)
    assert response.status_code == 403


def test_a_customer_access_token_cannot_drive_faults(injector, tmp_path):
    fake_customer_token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjdXNfeCJ9.c2lnbmF0dXJl"
    response = requests.post(f"{injector}{FAULTS}", json=TAKE_DOWN, timeout=5,
                             headers={"Authorization": f"Bearer {fake_customer_token}"})
    assert response.status_code == 401


def test_the_audit_log_names_the_authenticated_principal_not_a_claimed_actor(injector):
    response = requests.post(f"{injector}{FAULTS}", json={"kind": "latency", "target": "fraud", "latency_ms": 5},
                             headers={**control_headers(), c.HEADER_ACTOR: "system:expiry"}, timeout=5)
    assert response.status_code == 201, response.text
    assert response.json()["actor"] == "operator (system:expiry)"
    audit = requests.get(f"{injector}{FAULTS}/audit?limit=1", headers=control_headers(), timeout=5).json()
    assert audit[0]["actor"].startswith("operator ") and audit[0]["actor"] != "system:expiry"


def test_the_internal_fault_poll_answers_fault_followers_only(injector):
    from tests.support import service_headers

    assert requests.get(f"{injector}/internal/faults", timeout=5).status_code == 401
    assert requests.get(f"{injector}/internal/faults", headers=service_headers(c.FRAUD, c.FAULT_INJECTOR),
                        timeout=5).status_code == 200
    assert requests.get(f"{injector}/internal/faults", headers=service_headers(c.BASELINER, c.FAULT_INJECTOR),
                        timeout=5).status_code == 403


def test_a_superscript_digit_in_limit_is_a_400_not_a_500_at_the_fault_injector(injector):
    response = requests.get(f"{injector}{FAULTS}/audit", params={"limit": "²"}, headers=control_headers(), timeout=5)
    assert response.status_code == 400 and response.json()["error"] == "invalid_limit"


def test_the_fault_cli_finds_the_labs_token_in_its_data_directory_by_itself(injector, tmp_path):
    """A user types `obslab fault set ...` with no token: the CLI reads the lab's own one."""
    environment = {k: v for k, v in os.environ.items() if k not in (secrets.SECRETS_DIR_ENV, secrets.CONTROL_TOKEN_ENV)}
    environment["OBSLAB_DATA_DIR"] = str(Path(secrets.secrets_dir()).parent.parent)
    done = subprocess.run([sys.executable, "-m", "obslab", "fault", "--url", injector, "list", "--json"],
                          capture_output=True, text=True, timeout=60, env=environment)
    assert done.returncode == 0, done.stderr
    elsewhere = {**environment, "OBSLAB_DATA_DIR": str(tmp_path)}
    refused = subprocess.run([sys.executable, "-m", "obslab", "fault", "--url", injector, "list"],
                             capture_output=True, text=True, timeout=60, env=elsewhere)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "control token is missing" in refused.stderr


# --- secrets ---------------------------------------------------------------------------------------


def serve_in_child(component: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    port = settings.max_port_offset()  # any port: the component must refuse before it listens
    environment = {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "obslab", "serve", component, "--port", str(port)],
                          capture_output=True, text=True, timeout=60, env=environment)


@pytest.mark.parametrize("value", ["obslab-development-secret-do-not-use-outside-the-lab",
                                   "obslab-compose-lab-secret-change-me", "short"])
def test_a_published_or_weak_token_key_stops_the_gateway_from_starting(value):
    done = serve_in_child(c.GATEWAY, {secrets.JWT_SECRET_ENV: value})
    assert done.returncode == 2
    assert "obslab: error:" in done.stderr and secrets.JWT_SECRET_ENV in done.stderr
    # It never served: it ends at once, not after retrying to export its spans to no collector.
    assert "export" not in done.stderr, done.stderr


def test_a_component_without_its_signing_key_refuses_to_start(tmp_path):
    secrets.init_secrets(tmp_path, [c.FRAUD])     # every key but the accounts service's
    done = serve_in_child(c.ACCOUNTS, {secrets.SECRETS_DIR_ENV: str(tmp_path),
                                       "OBSLAB_ACCOUNTS_DB_URL": f"sqlite:///{tmp_path / 'a.db'}"})
    assert done.returncode == 2 and "signing key of accounts is missing" in done.stderr


def test_no_secret_has_a_default_a_missing_token_key_stops_auth(tmp_path):
    done = serve_in_child(c.AUTH, {secrets.SECRETS_DIR_ENV: str(tmp_path / "empty"),
                                   "OBSLAB_AUTH_DB_URL": f"sqlite:///{tmp_path / 'a.db'}"})
    assert done.returncode == 2 and "obslab: error:" in done.stderr


def test_two_labs_never_share_secrets(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    for directory in (first, second):
        secrets.init_secrets(directory, secrets.lab_components())
    for relative in (secrets.JWT_SECRET_FILE, secrets.token_file(topology.OPERATOR),
                     secrets.private_key_file(c.GATEWAY)):
        assert (first / relative).read_bytes() != (second / relative).read_bytes()


def test_secrets_are_private_from_their_first_byte_and_kept_on_restart(tmp_path):
    directory = tmp_path / "lab" / "run" / "secrets"
    secrets.init_secrets(directory, secrets.lab_components())
    before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    assert secrets.init_secrets(directory, secrets.lab_components()) == []
    assert {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} == before
    for path in [directory, *directory.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_a_service_database_is_created_private_in_a_private_folder(tmp_path):
    from sqlalchemy import MetaData

    from obslab.platform.db import Database

    path = tmp_path / "data" / "db" / "fraud.sqlite3"
    Database(c.FRAUD, MetaData(), f"sqlite:///{path}").ping()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


# --- slow clients --------------------------------------------------------------------------------


@pytest.fixture
def served_gateway(tmp_path):
    """The gateway and auth as `obslab up` runs them: `obslab serve NAME`, each its own process."""
    from tests.integration.lab import free_offset
    from tests.support import stop_process

    offset = free_offset(17_000)
    environment = {**os.environ, "OBSLAB_PORT_OFFSET": str(offset), "OBSLAB_DATA_DIR": str(tmp_path),
                   "OTEL_SDK_DISABLED": "true"}
    processes = [subprocess.Popen([sys.executable, "-m", "obslab", "serve", name], env=environment,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for name in (c.AUTH, c.GATEWAY)]
    url = f"http://127.0.0.1:{topology.DEFAULT_PORTS[c.GATEWAY] + offset}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200 and requests.post(
                        f"{url}/api/v1/auth/register", json={"username": "slowloris-victim", "password": PASSWORD},
                        timeout=10).status_code == 201:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "gateway and auth did not start"
            time.sleep(0.3)
        yield url
    finally:
        for process in processes:
            stop_process(process)


def test_200_half_open_connections_do_not_stop_the_gateway_answering_health_and_login_within_1s(served_gateway):
    """Slowloris: sockets that send half a request and wait. `obslab serve` (waitress) reads requests
    in its event loop, so they hold descriptors, not the threads that answer everybody else."""
    host, port = served_gateway.removeprefix("http://").split(":")
    held = []
    try:
        for i in range(200):
            sock = socket.create_connection((host, int(port)), timeout=5)
            # half a header, or a whole header and half a body: both wait for bytes that never come
            sock.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n" if i % 2 else
                         b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            held.append(sock)
        time.sleep(0.5)
        for _ in range(3):
            started = time.perf_counter()
            health = requests.get(f"{served_gateway}/health", timeout=5)
            health_seconds = time.perf_counter() - started
            started = time.perf_counter()
            login = requests.post(f"{served_gateway}/api/v1/auth/login", timeout=5,
                                  json={"username": "slowloris-victim", "password": PASSWORD})
            login_seconds = time.perf_counter() - started
            assert health.status_code == 200 and login.status_code == 200, login.text
            assert health_seconds < 1.0 and login_seconds < 1.0, (health_seconds, login_seconds)
    finally:
        for sock in held:
            sock.close()


# --- ports ------------------------------------------------------------------------------------------


def test_a_lab_cannot_be_placed_in_the_kernels_ephemeral_port_range(monkeypatch):
    from tests.integration.lab import free_offset

    highest_port = max(topology.DEFAULT_PORTS.values())
    assert highest_port + settings.max_port_offset() < settings.EPHEMERAL_PORTS_START
    monkeypatch.setenv("OBSLAB_PORT_OFFSET", str(settings.max_port_offset() + 1))
    with pytest.raises(settings.ConfigError, match="ephemeral"):
        settings.port_offset()
    assert highest_port + free_offset(23_000) < settings.EPHEMERAL_PORTS_START
