"""The launcher's side of the fork server's protocol (obslab/lab/launch.py), on a socket pair."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from obslab.lab import launch
from obslab.lab.forkserver import _send_started


def pidfd_target(handle: int) -> int:
    with open(f"/proc/self/fdinfo/{handle}") as info:
        return int(next(line.split()[1] for line in info if line.startswith("Pid:")))


def test_the_launcher_gets_a_pidfd_of_the_child_from_the_server_not_by_pid_after_the_fact():
    """A pid the launcher opened itself could name another process, if the child ended and its pid
    was reused before; the server's pidfd was opened while the child could not yet be reaped."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    server_end, launcher_end = socket.socketpair()
    try:
        _send_started(server_end, child.pid)
        started, handle = launch.read_started(launcher_end, bytearray())
        assert started == {"pid": child.pid} and handle is not None
        assert pidfd_target(handle) == child.pid
        signal.pidfd_send_signal(handle, signal.SIGTERM)
        assert child.wait(timeout=10) == -signal.SIGTERM
        os.close(handle)
    finally:
        child.kill()
        child.wait()
        server_end.close()
        launcher_end.close()


def test_the_rest_of_the_servers_answer_stays_buffered_for_the_next_read():
    server_end, launcher_end = socket.socketpair()
    with server_end, launcher_end:
        server_end.sendall(b'{"pid": 4242}\n{"status": 0}\n')
        buffer = bytearray()
        started, handle = launch.read_started(launcher_end, buffer)
        assert started == {"pid": 4242} and handle is None
        assert launch.read_message(launcher_end, buffer) == {"status": 0}


def test_a_record_that_is_not_two_pids_is_none(tmp_path):
    record = tmp_path / "gateway.pid"
    assert launch.read_pid_file(record) is None
    record.write_text("12 x\n")
    assert launch.read_pid_file(record) is None
    record.write_text("12 34\n")
    assert launch.read_pid_file(record) == (12, 34)
