"""The native lab's fork server: the platform imported once, every Python component forked from it.

Without it, each of the lab's fourteen Python components started a fresh interpreter that imported
Flask, SQLAlchemy, OpenTelemetry, pydantic and the rest for itself: 11 s of CPU on two cores
before the first one answered, and the same 40 MiB of imported code held fourteen times. Here one
process imports the platform and every component's module, freezes what it holds out of the
garbage collector's reach (so that collections do not write to, and un-share, those pages) and
forks a component whenever one of the lab's launchers asks (obslab/lab/launch.py). The children
share the imported code copy-on-write.

supervisord still supervises each component: it runs the component's launcher, which passes its
stdin, stdout and stderr and its environment over a Unix socket, forwards the signals it gets to
the forked child and exits with the child's status. A launcher that finds no fork server starts
its component by itself, as before.

Protocol, per connection: the launcher sends one JSON line ``{"name", "env", "cwd"}`` with its
three standard descriptors attached (SCM_RIGHTS); the server answers ``{"pid": N}`` once
forked, with a pidfd of the child attached, then ``{"status": S}`` (a wait status) when the
child ends. A launcher that goes away takes its child with it (SIGKILL): supervisord only kills
a launcher that did not stop in time. The child watches its launcher's connection itself too,
so that this holds while no fork server runs.

Stopping the fork server stops no component: each is stopped through its own launcher. The
server waits for its children to end (their launchers are being stopped too when the whole lab
stops) so that it can report their statuses, at most ``STOP_GRACE_SECONDS``.

Not thread-safe by design: the server is one thread, so that fork() copies a consistent process.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import select
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

MAX_REQUEST_BYTES = 1 << 20
# On stop, how long the server waits for its children's ends to report them; below its
# supervisord stopwaitsecs (obslab/lab/native.py), above a component's own stop (serving.py).
STOP_GRACE_SECONDS = 16.0
# Blocked around fork(): a signal the launcher forwards at once must find the child with the
# default handlers, not the server's (which would only set a flag in the child's copy).
_CHILD_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                  signal.SIGUSR2, signal.SIGCHLD}
NOT_PRELOADED_TIERS = ("ml", "iis", "traffic")


def preloaded_modules() -> list[str]:
    """What every child should find imported: the serving platform and each component's module.

    Left out: the modules that import numpy (the ML detectors, the IIS mock, the load generator
    with its simulation). numpy starts OpenBLAS's threads when imported, and fork() copies none
    of a process's threads, only their state. And scikit-learn and pandas would delay every
    banking service by the two seconds they take to import, for the two components that need
    them. Those components are forked all the same, and import the rest themselves."""
    from obslab import topology

    modules = ["obslab.platform.serving", "obslab.cli", "obslab.cli.serve", "obslab.lab.native"]
    for comp in topology.ALL:
        if comp.entry and comp.tier not in NOT_PRELOADED_TIERS:
            modules.append(comp.entry.partition(":")[0])
    return modules


@dataclass
class _Child:
    pid: int
    name: str
    conn: socket.socket


@dataclass
class ForkServer:
    listener: socket.socket
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    children: dict[int, _Child] = field(default_factory=dict)      # by pid
    by_conn: dict[int, _Child] = field(default_factory=dict)       # by the launcher connection's fd
    stopping: float | None = None

    def __post_init__(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)   # the wakeup fd says so; reaped in the loop
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")

    def _stop(self, _signum: int, _frame: object) -> None:
        if self.stopping is None:
            self.stopping = time.monotonic()

    def serve_forever(self) -> None:
        while True:
            if self.stopping is not None and (
                    not self.children or time.monotonic() - self.stopping > STOP_GRACE_SECONDS):
                return     # children still running go on under their launchers
            for key, _ in self.selector.select(timeout=0.5):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    self._drain_wakeups()
                else:
                    self._launcher_spoke(key.data)
            self._reap()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        if self.stopping is not None:
            conn.close()      # the launcher starts its component by itself
            return
        try:
            conn.settimeout(5.0)
            request, fds = _receive_request(conn)
        except (OSError, ValueError) as exc:
            print(f"fork-server: a launcher's request was refused: {exc}", file=sys.stderr, flush=True)
            conn.close()
            return
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _CHILD_SIGNALS)
        pid = -1
        try:
            pid = os.fork()
            if pid == 0:
                self._become(request, fds, conn, blocked)     # never returns
        except OSError as exc:
            print(f"fork-server: could not fork {request['name']}: {exc}", file=sys.stderr, flush=True)
            _close_all(fds)
            conn.close()
            return
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        _close_all(fds)
        child = _Child(pid, request["name"], conn)
        self.children[pid] = child
        self.by_conn[conn.fileno()] = child
        _send_started(conn, pid)
        conn.setblocking(False)
        self.selector.register(conn, selectors.EVENT_READ, child)

    def _launcher_spoke(self, child: _Child) -> None:
        try:
            data = child.conn.recv(512)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return        # launchers say nothing after their request; ignore it
        # The launcher is gone (supervisord killed it, or it crashed): so is its component.
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._forget_connection(child)

    def _forget_connection(self, child: _Child) -> None:
        if self.by_conn.pop(child.conn.fileno(), None) is not None:
            self.selector.unregister(child.conn)
            child.conn.close()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            if child.conn.fileno() in self.by_conn:
                try:
                    child.conn.setblocking(True)
                    child.conn.settimeout(1.0)
                    child.conn.sendall(json.dumps({"status": status}).encode() + b"\n")
                except OSError:
                    pass
                self._forget_connection(child)

    def _become(self, request: dict, fds: list[int], conn: socket.socket, mask: set) -> None:
        """In the child: the component ``request`` names, with the launcher's descriptors and
        environment. Ends the process; never returns into the server's loop."""
        status = 1
        try:
            os.setsid()      # its own process group: signals reach it through its launcher only
            signal.set_wakeup_fd(-1)
            for signum in _CHILD_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)    # a pending SIGTERM now ends it
            self.selector.close()
            _die_with_launcher(conn)
            for fd in (self.listener.fileno(), self._wake_r, self._wake_w,
                       *(c.conn.fileno() for c in self.by_conn.values())):
                try:
                    os.close(fd)
                except OSError:
                    pass
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                if fd > 2:
                    os.close(fd)
            # sys.stdout and sys.stderr stay: they write through (PYTHONUNBUFFERED, as every
            # program of the lab has it) to descriptors 1 and 2, now the launcher's.
            os.environ.clear()
            os.environ.update(request["env"])
            os.chdir(request["cwd"])
            sys.argv = ["obslab", "serve", request["name"]]
            _name_process(request["name"])
            from obslab.cli import main

            status = main(["serve", request["name"]])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:   # noqa: BLE001 - whatever happens, the child must not return to the loop
            import traceback

            traceback.print_exc()
        finally:
            try:
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(status if isinstance(status, int) else 1)


def _send_started(conn: socket.socket, pid: int) -> None:
    """``{"pid": N}`` with a pidfd of the child attached: opened here, before the child can be
    reaped, it names this child and no later process with its pid, whenever the launcher uses it."""
    try:
        handle = os.pidfd_open(pid)
    except OSError:           # a kernel without pidfds: the launcher signals the pid
        handle = None
    reply = json.dumps({"pid": pid}).encode() + b"\n"
    try:
        socket.send_fds(conn, [reply], [] if handle is None else [handle])
    except OSError:
        pass        # the launcher is gone: its end of the connection says so in the selector
    finally:
        if handle is not None:
            os.close(handle)


def _die_with_launcher(conn: socket.socket) -> None:
    """A thread that ends this child when its launcher goes away (supervisord killed it): what
    the server does too, but this also holds while no server runs. It only reads; the launcher
    sends nothing after its request, so whatever arrives is the end of the connection."""
    descriptor = conn.fileno()
    poller = select.poll()      # not select(): that refuses descriptors above 1023
    poller.register(descriptor, select.POLLIN)

    def watch(_keep_open: socket.socket = conn) -> None:
        while True:
            poller.poll()
            try:
                data = os.read(descriptor, 512)
            except BlockingIOError:      # the server's copy shares O_NONBLOCK; nothing to read
                continue
            except OSError:
                data = b""
            if not data:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def _name_process(name: str) -> None:
    """``ps -o comm`` and ``top`` show the component, not one more ``python``."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass


def _receive_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _flags, _address = socket.recv_fds(conn, MAX_REQUEST_BYTES, 3)
    while not data.endswith(b"\n"):
        more = conn.recv(MAX_REQUEST_BYTES)
        if not more or len(data) + len(more) > MAX_REQUEST_BYTES:
            _close_all(fds)
            raise ValueError("the request was cut short")
        data += more
    if len(fds) != 3:
        _close_all(fds)
        raise ValueError(f"expected stdin, stdout and stderr, got {len(fds)} descriptors")
    try:
        request = json.loads(data)
        if not (isinstance(request.get("name"), str) and isinstance(request.get("env"), dict)
                and isinstance(request.get("cwd"), str)):
            raise ValueError("name, env and cwd are required")
    except (ValueError, AttributeError) as exc:
        _close_all(fds)
        raise ValueError(f"not a launch request: {exc}") from None
    return request, fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def listen(path: str) -> socket.socket:
    """The server's socket, its user's alone; a stale one from a previous lab is replaced."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(64)
    return listener


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m obslab.lab.forkserver SOCKET_PATH", file=sys.stderr)
        return 2
    # Listening before importing: launchers that start meanwhile wait in the backlog.
    listener = listen(args[0])
    began = time.monotonic()
    for module in preloaded_modules():
        importlib.import_module(module)
    gc.collect()
    gc.freeze()
    print(json.dumps({"message": "fork server ready", "preloaded_s": round(time.monotonic() - began, 2),
                      "socket": args[0]}), flush=True)
    ForkServer(listener).serve_forever()
    try:
        os.unlink(args[0])
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
