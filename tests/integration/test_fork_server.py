"""The native lab's fork server and launchers (obslab/lab/forkserver.py, obslab/lab/launch.py),
with real processes: a component forked from the server serves, writes through its launcher's
stdout, stops with its launcher's SIGTERM, dies with a killed launcher, and reports its failures
and exit status through the launcher; without a fork server the launcher serves by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from obslab import conventions as c
from obslab import secrets, topology
from obslab.lab.launch import SOCKET_ENV, pid_file
from obslab.lab.supervisor import Supervisor
from tests.integration.lab import eventually, free_offset

COMPONENT = c.IIS_MOCK      # a component that needs nothing but its signing key


def parent_of(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2:].split()[1])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):     # gone, or going while it was read
        return False
    return state[state.rindex(")") + 2] != "Z"


def soon(check, what: str):
    return eventually(check, timeout=20, what=what, interval=0.05)


@pytest.fixture
def lab_dir(tmp_path):
    data = tmp_path / "data"
    (data / "run").mkdir(parents=True)
    secrets.init_secrets(secrets.secrets_dir(data), secrets.lab_components())
    return data


@pytest.fixture
def environment(lab_dir):
    offset = free_offset(12_000)
    env = {**os.environ, "OBSLAB_DATA_DIR": str(lab_dir), "OBSLAB_SECRETS_DIR": str(secrets.secrets_dir(lab_dir)),
           "OBSLAB_PORT_OFFSET": str(offset), "PYTHONUNBUFFERED": "1", SOCKET_ENV: str(lab_dir / "run" / "fork.sock")}
    env.pop("OBSLAB_FAULT_INJECTOR_URL", None)
    return env, offset


@pytest.fixture
def fork_server(environment, lab_dir):
    env, _ = environment
    server = subprocess.Popen([sys.executable, "-m", "obslab.lab.forkserver", env[SOCKET_ENV]], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=lab_dir)
    assert "fork server ready" in server.stdout.readline()
    yield server
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        raise


def launch(env: dict, name: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "obslab.lab.launch", name], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def health_url(offset: int) -> str:
    return f"http://{topology.component(COMPONENT).address('native', offset=offset)}/health"


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def started(env: dict, offset: int, cwd: Path) -> tuple[subprocess.Popen, int]:
    """A launcher and its forked component, once the component answers."""
    launcher = launch(env, COMPONENT, cwd)
    try:
        soon(lambda: answers(health_url(offset)), what=f"{COMPONENT} answering")
        return launcher, forked_pid(env, launcher)
    except BaseException:
        launcher.kill()
        raise


def forked_pid(env: dict, launcher: subprocess.Popen) -> int:
    record = Path(pid_file(env[SOCKET_ENV], COMPONENT))
    text = soon(lambda: record.exists() and record.read_text().strip(), what=f"{record} written")
    launcher_pid, child = map(int, text.split())
    assert launcher_pid == launcher.pid
    return child


def test_a_forked_component_serves_logs_through_its_launcher_and_stops_with_its_sigterm(fork_server, environment,
                                                                                         lab_dir):
    env, offset = environment
    launcher, child = started(env, offset, lab_dir)
    try:
        assert child != launcher.pid and parent_of(child) == fork_server.pid
        assert Path(f"/proc/{child}/comm").read_text().strip() == COMPONENT
        # supervisord's last resort kills recorded components, and only processes that still are one
        stale = Path(pid_file(env[SOCKET_ENV], "stale"))
        stale.write_text(f"1 {os.getpid()}\n")
        assert Supervisor(lab_dir)._forked_pids() == [child]
        launcher.send_signal(signal.SIGTERM)
        out, _ = launcher.communicate(timeout=20)
    finally:
        launcher.kill()
    assert launcher.returncode == 0
    assert '"message":"serving"' in out.replace(" ", "")     # its log went to the launcher's stdout
    assert not Path(pid_file(env[SOCKET_ENV], COMPONENT)).exists()    # its pid is free for reuse
    soon(lambda: not alive(child), what="the forked component ending")
    assert not answers(health_url(offset))


def test_a_killed_launcher_takes_its_component_with_it(fork_server, environment, lab_dir):
    env, offset = environment
    launcher, child = started(env, offset, lab_dir)
    launcher.kill()
    launcher.communicate(timeout=10)
    soon(lambda: not alive(child), what="the orphaned component being killed")
    assert fork_server.poll() is None     # the server itself goes on


def test_a_component_that_cannot_start_says_why_through_its_launcher_and_fails(fork_server, environment, lab_dir):
    env, _ = environment
    launcher = launch(env, "no-such-component", lab_dir)
    _, err = launcher.communicate(timeout=30)
    assert launcher.returncode == 2
    assert "unknown component 'no-such-component'" in err
    assert fork_server.poll() is None


def test_without_a_fork_server_the_launcher_serves_the_component_by_itself(environment, lab_dir):
    env, offset = environment
    alone = {key: value for key, value in env.items() if key != SOCKET_ENV}
    launcher = launch(alone, COMPONENT, lab_dir)
    try:
        soon(lambda: answers(health_url(offset)), what=f"{COMPONENT} answering")
        assert not Path(pid_file(env[SOCKET_ENV], COMPONENT)).exists()
        launcher.send_signal(signal.SIGTERM)
        launcher.communicate(timeout=20)
    finally:
        launcher.kill()
    assert launcher.returncode == 0


def test_the_fork_server_preloads_nothing_that_starts_a_thread():
    # fork() copies the calling thread only: a thread started by an import (numpy's OpenBLAS
    # pool) would be missing in every child, with its locks in whatever state it left them.
    probe = ("import importlib, os, sys\n"
             "from obslab.lab.forkserver import preloaded_modules\n"
             "for name in preloaded_modules(): importlib.import_module(name)\n"
             "print(len(os.listdir('/proc/self/task')), 'numpy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["1", "False"], out


def test_a_stop_sent_as_the_component_starts_stops_it_at_once(fork_server, environment, lab_dir):
    # Forwarded the moment the child exists, before the component sets its own handlers.
    env, offset = environment
    for delay in (0.0, 0.05, 0.15, 0.3):
        launcher = launch(env, COMPONENT, lab_dir)
        time.sleep(delay)
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.communicate(timeout=15)
        finally:
            launcher.kill()
        # -SIGTERM: the launcher itself ended before it could forward anything (nothing started)
        assert launcher.returncode in (0, 128 + signal.SIGTERM, -signal.SIGTERM), (delay, launcher.returncode)
        assert not answers(health_url(offset)), delay
    assert fork_server.poll() is None


def test_a_killed_launcher_takes_its_component_with_it_even_without_a_fork_server(fork_server, environment,
                                                                                    lab_dir):
    env, offset = environment
    launcher, child = started(env, offset, lab_dir)
    try:
        fork_server.kill()
        fork_server.wait(timeout=10)
        assert alive(child) and answers(health_url(offset))    # the server's end is not the child's
    finally:
        launcher.kill()
        launcher.communicate(timeout=10)
    soon(lambda: not alive(child), what="the component of a killed launcher ending by itself")
