"""``python -m obslab.lab.launch NAME``: what supervisord runs for each Python component of the
native lab. It asks the lab's fork server (obslab/lab/forkserver.py) for the component, passing its
stdin, stdout, stderr and environment; forwards the signals supervisord sends it to the forked
child; and exits with the child's status. Without a fork server it becomes ``obslab serve NAME``.

It imports nothing beyond the standard library: it is fourteen small processes next to the lab.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable

SOCKET_ENV = "OBSLAB_FORK_SERVER"      # set by obslab up (obslab/lab/native.py) for every program
CONNECT_SECONDS = 10.0   # the fork server binds at once, then imports for a second or two
STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
FORWARDED = (*STOPPING, signal.SIGUSR1, signal.SIGUSR2)


def pid_file(socket_path: str, name: str) -> str:
    """Where a launcher writes "<its pid> <the child's pid>": the lab's benchmarks measure the
    component, not its launcher (obslab/bench/lab.py)."""
    return os.path.join(os.path.dirname(socket_path), "forked", f"{name}.pid")


def read_pid_file(path: str | os.PathLike) -> tuple[int, int] | None:
    """(launcher pid, child pid) from a record ``pid_file`` names; None when there is none or it
    is not two pids."""
    try:
        with open(path) as record:
            launcher, child = map(int, record.read().split())
    except (OSError, ValueError):
        return None
    return launcher, child


def serve_alone(name: str, why: str | None, stop_signal: Callable[[], int | None] = lambda: None) -> None:
    """Become ``obslab serve NAME``, unless a stop came first. A stop that comes meanwhile ends this
    process, as it would have ended the component: it is not kept for a child that never comes."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)
    if (signum := stop_signal()) is not None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
        raise SystemExit(128 + signum)
    for signum in STOPPING:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
    if why:
        print(f"launch: {why}; {name} starts on its own", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "obslab", "serve", name])


def connect(path: str, deadline: float, stopped: Callable[[], bool]) -> socket.socket | None:
    while not stopped():
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
            return conn
        except (FileNotFoundError, ConnectionRefusedError):
            conn.close()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
    return None


def read_started(conn: socket.socket, buffer: bytearray) -> tuple[dict | None, int | None]:
    """The fork server's first answer, ``{"pid": N}``, and the pidfd of the child it attaches;
    (None, None) when the server closed the connection first. The pidfd is this launcher's
    alone: it is not inherited by ``obslab serve`` if the launcher becomes it."""
    handle: int | None = None
    try:
        while b"\n" not in buffer:
            chunk, fds, _flags, _address = socket.recv_fds(conn, 4096, 1)
            for fd in fds:
                os.set_inheritable(fd, False)
                if handle is None:
                    handle = fd
                else:
                    os.close(fd)
            if not chunk:
                break
            buffer += chunk
        started = read_message(conn, buffer) if b"\n" in buffer else None
    except BaseException:
        if handle is not None:
            os.close(handle)
        raise
    if started is None and handle is not None:
        os.close(handle)
        handle = None
    return started, handle


def read_message(conn: socket.socket, buffer: bytearray) -> dict | None:
    """The next JSON line from the fork server; None when it closed the connection first."""
    while b"\n" not in buffer:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


class Child:
    """The forked component, once it exists: signals that come before are kept and passed on
    then; after it ended, none is sent (its pid may be another process's by then). A pidfd names
    this process and no later one with its pid."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.handle: int | None = None
        self.pending: list[int] = []
        self.ended = False

    def started(self, pid: int, handle: int | None) -> None:
        """``handle``: the pidfd the fork server sent; without one (a kernel without pidfds) the
        child is signalled by its pid."""
        self.handle = handle
        self.pid = pid
        for signum in self.pending:
            self.signal(signum)

    def signal(self, signum: int, _frame: object = None) -> None:
        if self.ended:
            return
        if self.pid is None:
            self.pending.append(signum)
            return
        try:
            if self.handle is not None:
                signal.pidfd_send_signal(self.handle, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def wait(self) -> int:
        """The connection ended without the child's status: the fork server went away, and the
        child has ended too (it holds the server's end of the connection while it lives, so the
        end comes only after it). Its status went with the server; 1 says it is unknown."""
        if self.handle is not None:
            while not select.select([self.handle], [], [], 1.0)[0]:
                pass
        return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m obslab.lab.launch COMPONENT", file=sys.stderr)
        return 2
    name = args[0]
    path = os.environ.get(SOCKET_ENV)
    if not path:
        serve_alone(name, None)
    child = Child()
    for signum in FORWARDED:
        signal.signal(signum, child.signal)

    def stop_signal() -> int | None:
        return next((signum for signum in child.pending if signum in STOPPING), None)

    def stopped() -> bool:
        return stop_signal() is not None

    conn = connect(path, time.monotonic() + CONNECT_SECONDS, stopped)
    if stopped():
        return 128 + stop_signal()     # nothing to stop yet
    if conn is None:
        serve_alone(name, f"no fork server answers at {path}", stop_signal)
    request = json.dumps({"name": name, "env": dict(os.environ), "cwd": os.getcwd()}).encode() + b"\n"
    buffer, handle = bytearray(), None
    try:
        socket.send_fds(conn, [request], [0, 1, 2])
        started, handle = read_started(conn, buffer)
    except OSError as exc:
        started, failure = None, str(exc)
    else:
        failure = "it closed the connection"
    if started is None:
        serve_alone(name, f"the fork server did not start it ({failure})", stop_signal)
    pid = int(started["pid"])
    record = pid_file(path, name)
    try:
        os.makedirs(os.path.dirname(record), mode=0o700, exist_ok=True)
        with open(record, "w") as out:
            out.write(f"{os.getpid()} {pid}\n")
    except OSError:
        pass
    child.started(pid, handle)
    try:
        try:
            ended = read_message(conn, buffer)
        except OSError:
            ended = None
        if ended is None:
            return child.wait()
        child.ended = True
        code = os.waitstatus_to_exitcode(int(ended["status"]))
        return 128 - code if code < 0 else code     # killed by signal N: 128 + N, as a shell says
    finally:
        try:
            os.unlink(record)     # its pid may soon be another process's
        except OSError:
            pass


if __name__ == "__main__":
    raise SystemExit(main())
