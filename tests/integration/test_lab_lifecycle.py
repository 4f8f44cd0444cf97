"""`obslab up` in the foreground: healthy, then Ctrl-C stops everything cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from obslab import topology
from tests.integration.lab import free_offset, obslab

pytestmark = [pytest.mark.lab, pytest.mark.serial, pytest.mark.usefixtures("untraced_client")]


def test_foreground_up_runs_until_ctrl_c_then_stops_every_process(tmp_path):
    offset = free_offset(19_000)
    data_dir = tmp_path / "data"
    env = {**os.environ, "OBSLAB_PORT_OFFSET": str(offset)}
    process = subprocess.Popen(
        [sys.executable, "-m", "obslab", "up", "--profile", "fast", "--no-seed", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # Ctrl-C once `up` says it runs in the foreground (earlier, it stops the start instead).
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and process.poll() is None:
            if any("press Ctrl-C" in line for line in list(lines)):
                break
            time.sleep(0.5)
        assert any("press Ctrl-C" in line for line in list(lines)), "".join(lines)
        status = obslab("status", "--json", "--data-dir", str(data_dir), offset=offset, timeout=30)
        components = json.loads(status.stdout or '{"components": []}')["components"]
        assert components and all(item["healthy"] for item in components), components
        pids = [int(line.split()[-1]) for line in (data_dir / "run" / "supervisord.pid").read_text().split()]
        process.send_signal(signal.SIGINT)
        process.wait(timeout=90)
        reader.join(timeout=10)
        output = "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            obslab("down", "--data-dir", str(data_dir), offset=offset)
    assert process.returncode == 0, output
    assert "press Ctrl-C" in output and "Lab stopped." in output
    for port in topology.DEFAULT_PORTS.values():
        try:
            requests.get(f"http://127.0.0.1:{port + offset}/health", timeout=1)
        except requests.ConnectionError:
            continue
        raise AssertionError(f"port {port + offset} still answers after Ctrl-C")
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z"
    after = obslab("status", "--data-dir", str(data_dir), offset=offset)
    assert after.returncode == 1 and "No lab is running" in after.stderr


def test_down_without_a_lab_says_so_and_succeeds(tmp_path):
    result = obslab("down", "--data-dir", str(tmp_path), offset=0)
    assert result.returncode == 0 and "No lab is running" in result.stdout


def test_cli_errors_are_one_line_and_non_zero(tmp_path):
    bad_offset = obslab("status", "--data-dir", str(tmp_path), offset=0, env={"OBSLAB_PORT_OFFSET": "lots"})
    assert bad_offset.returncode == 2
    assert bad_offset.stderr.strip() == "obslab: error: OBSLAB_PORT_OFFSET must be an integer, got 'lots'"
    unknown = obslab("serve", "ledger", offset=0)
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    assert "unknown component 'ledger'" in unknown.stderr
