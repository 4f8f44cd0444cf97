"""Process supervision of the native lab, delegated to supervisord.

supervisord runs detached (its own session, so Ctrl-C in the terminal reaches only ``obslab
up``), restarts a crashed component, stops each component's whole process group, and writes one
log file per component. We talk to it over its XML-RPC unix socket in the data directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from obslab.lab.launch import read_pid_file
from obslab.secrets import private_dir

# AF_UNIX paths are limited to 108 bytes on Linux.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class Program:
    name: str
    command: list[str]
    priority: int
    stop_wait_seconds: int = 15
    autostart: bool = True          # False: started later with start_program()


@dataclass(frozen=True)
class ProcessState:
    name: str
    state: str          # RUNNING, STARTING, BACKOFF, FATAL, EXITED, STOPPED ...
    pid: int
    description: str


class SupervisorError(RuntimeError):
    pass


def _quote(value: str) -> str:
    """supervisord expands %(name)s in values; a literal % must be doubled."""
    return value.replace("%", "%%")


class Supervisor:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.run_dir = data_dir / "run"
        self.log_dir = data_dir / "logs"
        self.config_path = self.run_dir / "supervisord.conf"
        self.pid_path = self.run_dir / "supervisord.pid"
        self.socket_path = self.run_dir / "supervisor.sock"

    def check_socket_path(self) -> None:
        """Only starting needs a socket: asking whether a lab runs in a deep directory (a backup
        restored there, a test's temporary folder) must answer "no", not fail."""
        if len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            raise SupervisorError(
                f"data directory path is too long for a unix socket ({self.socket_path}); "
                "use a shorter --data-dir"
            )

    def log_path(self, program: str) -> Path:
        return self.log_dir / f"{program}.log"

    def write_config(self, programs: list[Program]) -> None:
        self.check_socket_path()
        private_dir(self.run_dir)
        private_dir(self.log_dir)
        lines = [
            "; written by `obslab up`; regenerated at every start",
            "[supervisord]",
            # Everything the lab writes (databases, logs, TSDB, keys) is the lab user's alone.
            "umask=077",
            f"logfile={_quote(str(self.log_path('supervisord')))}",
            "logfile_maxbytes=10MB",
            "logfile_backups=2",
            f"pidfile={_quote(str(self.pid_path))}",
            f"childlogdir={_quote(str(self.log_dir))}",
            f"directory={_quote(str(self.data_dir))}",
            "loglevel=info",
            "",
            "[unix_http_server]",
            f"file={_quote(str(self.socket_path))}",
            "chmod=0700",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{_quote(str(self.socket_path))}",
        ]
        for program in programs:
            lines += [
                "",
                f"[program:{program.name}]",
                "command=" + " ".join(_quote(_shell_word(part)) for part in program.command),
                f"priority={program.priority}",
                f"autostart={'true' if program.autostart else 'false'}",
                "autorestart=true",
                "startsecs=2",
                "startretries=3",
                "stopsignal=TERM",
                f"stopwaitsecs={program.stop_wait_seconds}",
                "stopasgroup=true",
                "killasgroup=true",
                "redirect_stderr=true",
                f"stdout_logfile={_quote(str(self.log_path(program.name)))}",
                "stdout_logfile_maxbytes=20MB",
                "stdout_logfile_backups=3",
            ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, env: dict[str, str]) -> None:
        """Start supervisord (it daemonizes); returns once its control socket answers."""
        self.check_socket_path()
        self.socket_path.unlink(missing_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.config_path)],
            env=env, capture_output=True, text=True, timeout=30,
        )
        if result.returncode != 0:
            raise SupervisorError(f"supervisord did not start: {(result.stderr or result.stdout).strip()}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.running():
                return
            time.sleep(0.1)
        raise SupervisorError(f"supervisord did not answer on {self.socket_path}; see {self.log_path('supervisord')}")

    def _rpc(self) -> xmlrpc.client.ServerProxy:
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            return self._rpc().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def processes(self) -> dict[str, ProcessState]:
        try:
            infos = self._rpc().supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error):
            return {}
        return {
            info["name"]: ProcessState(info["name"], info["statename"], info["pid"], info["description"])
            for info in infos
        }

    def stop_program(self, name: str) -> None:
        """Stop one component (it stays stopped until :meth:`start_program`): a dependency outage."""
        self._rpc().supervisor.stopProcess(name, True)

    def start_program(self, name: str, wait: bool = True) -> None:
        """Start one program; ``wait``: until supervisord deems it running (its startsecs)."""
        self._rpc().supervisor.startProcess(name, wait)

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop every program and supervisord itself; wait for the end.

        Every program gets its stop signal at once: supervisord alone stops them one priority at
        a time, about a second each, which made `obslab down` take 15 s."""
        pid = self.pid()
        processes = self.processes()
        children = [p.pid for p in processes.values() if p.pid]
        first = [name for name, state in processes.items() if state.state == "RUNNING"]
        try:
            rpc = self._rpc().supervisor
            for name in first:
                rpc.stopProcess(name, False)
            deadline = time.monotonic() + timeout / 2
            while time.monotonic() < deadline and any(
                    self.processes().get(name, ProcessState(name, "STOPPED", 0, "")).state
                    in ("RUNNING", "STOPPING") for name in first):
                time.sleep(0.2)
        except (OSError, xmlrpc.client.Error):
            pass
        try:
            self._rpc().supervisor.shutdown()
        except (OSError, xmlrpc.client.Error):
            pass
        deadline = time.monotonic() + timeout
        while pid is not None and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid is not None and _alive(pid):
            # Last resort; supervisord and each child lead their own process groups, and so does
            # each component forked by the fork server (their launchers recorded them).
            for group in [pid, *children, *self._forked_pids()]:
                try:
                    os.killpg(group, signal.SIGKILL)
                except OSError:
                    pass
        self.socket_path.unlink(missing_ok=True)

    def _forked_pids(self) -> list[int]:
        """Components the fork server forked, as their launchers recorded them (obslab/lab/launch.py).

        A killed launcher leaves its record behind, and the pid in it may be another process's
        by now: only a process that still leads its own session under the component's name
        (what a forked component does) is taken for it."""
        found = []
        for record in (self.run_dir / "forked").glob("*.pid"):
            if (recorded := read_pid_file(record)) is None:
                continue
            pid = recorded[1]
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            session = int(stat[stat.rindex(")") + 2:].split()[3])
            if session == pid and name == record.stem[:15]:
                found.append(pid)
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _shell_word(word: str) -> str:
    """supervisord splits ``command`` with shlex; quote words that contain spaces."""
    if word and all(ch not in word for ch in " \t\"'\\"):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"
