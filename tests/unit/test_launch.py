"""The launcher's side of the fork server's protocol (obslab/lab/launch.py), on a socket pair."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from obslab.lab import launch
from obslab.lab.forkserver import _send_started


def pidfd_target(handle: int) -> int:
    with open(f"/proc/self/fdinfo/{handle}") as info:
        return int(next(line.split()[1] for line in info if line.startswith("Pid:")))


def pidfds_supported() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not pidfds_supported(), reason="a kernel without pidfds: the launcher signals by pid")
def test_the_launcher_gets_a_pidfd_of_the_child_from_the_server_not_by_pid_after_the_fact():
    """A pid the launcher opened itself could name another process, if the child ended and its pid
    was reused before; the server's pidfd was opened while the child could not yet be reaped."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    server_end, launcher_end = socket.socketpair()
    handle = None
    try:
        _send_started(server_end, child.pid)
        started, handle = launch.read_started(launcher_end, bytearray())
        assert started == {"pid": child.pid} and handle is not None
        assert pidfd_target(handle) == child.pid and not os.get_inheritable(handle)
        signal.pidfd_send_signal(handle, signal.SIGTERM)
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        if handle is not None:
            os.close(handle)
        child.kill()
        child.wait()
        server_end.close()
        launcher_end.close()


def test_a_reply_in_pieces_is_read_whole_with_the_descriptor_that_came_with_its_first_piece():
    server_end, launcher_end = socket.socketpair()
    read_end, write_end = os.pipe()
    handle = None
    try:
        socket.send_fds(server_end, [b'{"pi'], [read_end])
        server_end.sendall(b'd": 7}\n')
        started, handle = launch.read_started(launcher_end, bytearray())
        assert started == {"pid": 7} and handle is not None and not os.get_inheritable(handle)
    finally:
        for fd in (read_end, write_end, handle):
            if fd is not None:
                os.close(fd)
        server_end.close()
        launcher_end.close()


def test_a_server_that_closes_before_its_whole_reply_leaves_no_descriptor_open():
    server_end, launcher_end = socket.socketpair()
    read_end, write_end = os.pipe()
    with launcher_end:
        socket.send_fds(server_end, [b'{"pi'], [read_end])
        server_end.close()
        before = open_descriptors()
        assert launch.read_started(launcher_end, bytearray()) == (None, None)
        assert open_descriptors() == before
    os.close(read_end)
    os.close(write_end)


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
