"""The native runtime: ``obslab up``, ``status`` and ``down`` for a lab of local processes.

All state lives under one data directory: ``run/`` (supervisord, the lab manifest, the token
key), ``logs/`` (one file per component), ``db/`` (SQLite per service), ``traces/`` (the trace
sink), ``prometheus/`` (config, the rules rendered for the profile, TSDB) and ``alertmanager/``
(config and notification state).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import requests

from obslab import conventions as c
from obslab import rules, secrets, settings, topology
from obslab.generators import promconfig
from obslab.lab import forkserver, launch
from obslab.lab.seed import SeedError, seed_demo_data
from obslab.lab.supervisor import Program, Supervisor, SupervisorError
from obslab.platform.identity import Signer
from obslab.profiles import RETENTION_DAYS, Profile

PROMETHEUS_INSTALL = "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"
# Debian names the binary prometheus-alertmanager; upstream tarballs call it alertmanager.
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")
_EXTERNAL = (topology.PROMETHEUS, topology.ALERTMANAGER)
FORK_SERVER_PROGRAM = "fork-server"      # obslab/lab/forkserver.py: supervised, not a component
HEALTH_TIMEOUT_SECONDS = 2.0


class LabError(RuntimeError):
    """Something the user has to fix; the message says what, on one line."""


@dataclass(frozen=True)
class LabComponent:
    name: str
    url: str
    health_url: str
    # Basic auth for the health probe (Alertmanager answers nobody without it, /-/ready included):
    # the user and the file holding the password, so that the password is never in the manifest.
    health_user: str | None = None
    health_password_file: str | None = None

    def health_auth(self) -> tuple[str, str] | None:
        if self.health_user is None or self.health_password_file is None:
            return None
        try:
            return self.health_user, Path(self.health_password_file).read_text().strip()
        except OSError:
            return None   # the probe then reads "HTTP 401", which says what is wrong


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    url: str
    healthy: bool
    detail: str


def check_health(url: str, timeout: float = HEALTH_TIMEOUT_SECONDS,
                 auth: tuple[str, str] | None = None) -> tuple[bool, str]:
    try:
        response = requests.get(url, timeout=timeout, auth=auth)
    except requests.RequestException as exc:
        reason = "not listening" if isinstance(exc, requests.ConnectionError) else type(exc).__name__
        return False, reason
    if response.status_code == 200:
        return True, "ok"
    try:
        checks = response.json().get("checks", {})
        failing = [f"{name} {state}" for name, state in checks.items() if state != "ok"]
        return False, ", ".join(failing) or f"HTTP {response.status_code}"
    except ValueError:
        return False, f"HTTP {response.status_code}"


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class NativeLab:
    def __init__(self, data_dir: Path, *, offset: int = 0, profile: Profile | None = None,
                 out: TextIO = sys.stdout) -> None:
        if not 0 <= offset <= settings.max_port_offset():
            # Checked here too, not only where OBSLAB_PORT_OFFSET is read: every component would
            # refuse it and the supervisor would restart them until the start timed out.
            raise LabError(f"port offset must be between 0 and {settings.max_port_offset()} (the lab's ports stay "
                           f"below the kernel's ephemeral range, {settings.EPHEMERAL_PORTS_START}+), got {offset}")
        self.data_dir = data_dir
        self.offset = offset
        self.profile = profile
        self.out = out
        self.supervisor = Supervisor(data_dir)
        self.manifest_path = data_dir / "run" / "lab.json"
        self.fork_server_socket = data_dir / "run" / "fork.sock"    # shorter than supervisord's
        self.healthy_after: dict[str, float] = {}    # by the last up(): seconds to healthy

    # --- helpers ---------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def _url(self, component: topology.Component) -> str:
        return f"http://{component.address('native', offset=self.offset)}"

    @property
    def secrets_dir(self) -> Path:
        return secrets.secrets_dir(self.data_dir)

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The lab's own secrets, from its data directory: never a key or token from the shell.
        for stale in (settings.JWT_SECRET, settings.CONTROL_TOKEN):
            env.pop(stale.name, None)
        env.update({
            settings.DATA_DIR.name: str(self.data_dir),
            settings.SECRETS_DIR.name: str(self.secrets_dir),
            settings.PORT_OFFSET.name: str(self.offset),
            settings.ENVIRONMENT.name: settings.environment(),
            "PYTHONUNBUFFERED": "1",
        })
        env[settings.FAULT_INJECTOR_URL.name] = self._url(topology.FAULT_INJECTOR)
        if self.profile is not None:
            env[settings.PROFILE.name] = self.profile.name
        env.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", self._url(topology.TRACE_SINK))
        env.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        # Spans visible in the sink within about a second instead of the default five.
        env.setdefault("OTEL_BSP_SCHEDULE_DELAY", "1000")
        # glibc gives threads that allocate at once arenas of their own (up to 8 per core), each
        # keeping what it once held; two are plenty for a server whose threads share one GIL.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        if settings.PRELOAD.get():
            env[launch.SOCKET_ENV] = str(self.fork_server_socket)
        else:
            env.pop(launch.SOCKET_ENV, None)
        return env

    def _write_rules(self) -> Path:
        """The spec's rule files for this lab's profile (production: the committed files' text)."""
        assert self.profile is not None
        directory = self.data_dir / "prometheus" / "rules"
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.yml"):
            stale.unlink()
        for relative, rule_file in rules.rule_files(self.profile).items():
            # A lab beside the default one serves its runbooks on its own port.
            base = f"{self._url(topology.ALERT_RECEIVER)}/runbooks" if self.offset else topology.RUNBOOK_BASE_URL
            (directory / Path(relative).name).write_text(rule_file.render(self.profile, runbook_base=base))
        return directory

    def _prometheus_program(self, binary: str, components: list[topology.Component]) -> Program:
        config_path = self.data_dir / "prometheus" / "prometheus.yml"
        rules_glob = str(self._write_rules() / "*.yml")
        assert self.profile is not None
        # Its pushes to Alertmanager carry the lab's basic auth (read from the secrets folder).
        promconfig.write(config_path, promconfig.render("native", self.profile, rules_glob=rules_glob,
                                                        offset=self.offset,
                                                        only={comp.name for comp in components},
                                                        secrets_dir=self.secrets_dir))
        return Program(c.PROMETHEUS, [
            binary,
            *promconfig.server_flags(self.profile, config_file=str(config_path),
                                     tsdb_path=str(self.data_dir / "prometheus" / "data"),
                                     external_url=self._url(topology.PROMETHEUS), retention_days=RETENTION_DAYS),
            f"--web.listen-address={topology.PROMETHEUS.address('native', offset=self.offset)}",
            # Opt-in: `obslab backup` then snapshots the TSDB through it; off, it copies the files
            # (nothing authenticates callers of Prometheus natively, and the admin API deletes series).
            *(["--web.enable-admin-api"] if settings.PROMETHEUS_ADMIN_API.get() else []),
        ], priority=900)

    def _alertmanager_program(self, binary: str) -> Program:
        from obslab.generators import amconfig

        assert self.profile is not None
        directory = self.data_dir / "alertmanager"
        config_path = amconfig.write_native(directory, self.profile, offset=self.offset,
                                            secrets_dir=self.secrets_dir)
        address = topology.ALERTMANAGER.address("native", offset=self.offset)
        return Program(c.ALERTMANAGER, [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address={address}",
            f"--web.external-url={self._url(topology.ALERTMANAGER)}",
            # Its whole HTTP API answers only the lab's basic auth: anybody on this machine reaches
            # loopback, and the API takes alerts (a fake page) and silences (a real one hidden).
            f"--web.config.file={amconfig.web_config_file('native', self.secrets_dir)}",
            # One instance, on loopback: no gossip port on all interfaces.
            "--cluster.listen-address=",
            "--log.format=json",
        ], priority=850)

    def _backup_program(self, every: float, keep: int | None) -> Program:
        """Scheduled backups: a program of its own, so they go on after `up --detach` returns."""
        from obslab.lab import backup

        keep = keep if keep is not None else settings.BACKUP_KEEP.get()
        self.say(f"Backups: every {int(every)} s into {backup.backup_dir(self.data_dir)}, keeping the newest {keep} "
                 f"(log: {self.supervisor.log_path(backup.SCHEDULER_PROGRAM)})")
        return Program(backup.SCHEDULER_PROGRAM, [
            sys.executable, "-m", "obslab", "backup", "schedule", "--data-dir", str(self.data_dir),
            # Whole seconds: `{every:g}` writes 2w as 1.2096e+06s, which no duration parser reads.
            "--every", f"{int(every)}s", "--keep", str(keep),
        ], priority=990)

    def _health_credentials(self, comp: topology.Component) -> dict[str, str]:
        """LabComponent's health_user and health_password_file: Alertmanager's basic auth."""
        if comp is not topology.ALERTMANAGER:
            return {}
        from obslab.generators import amconfig

        return {"health_user": secrets.ALERTMANAGER_WEB_USER,
                "health_password_file": amconfig.web_password_file("native", self.secrets_dir)}

    def _components(self, with_prometheus: bool, traffic: bool = True,
                    with_alertmanager: bool = False, ml: bool = True) -> list[topology.Component]:
        components = [comp for comp in topology.NATIVE_START_ORDER
                      if (traffic or comp is not topology.LOAD_GENERATOR) and (ml or comp not in topology.ML)]
        if with_alertmanager:
            components.append(topology.ALERTMANAGER)
        if with_prometheus:
            components.append(topology.PROMETHEUS)
        return components

    def _manifest_data(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {}

    def manifest(self) -> list[LabComponent]:
        return [LabComponent(**item) for item in self._manifest_data().get("components", [])]

    def recorded_profile(self) -> str | None:
        """The profile the lab in this data directory was started with (None: no lab, or no profile)."""
        return self._manifest_data().get("profile")

    def started_at(self) -> float | None:
        """When the lab in this data directory was started (Unix time; None: no lab recorded)."""
        value = self._manifest_data().get("started_at")
        return float(value) if isinstance(value, (int, float)) else None

    def running(self) -> bool:
        return self.supervisor.running()

    # --- commands --------------------------------------------------------------------------

    def up(self, *, detach: bool, timeout: float = 90.0, seed: bool = True, traffic: bool = True,
           backup_every: float | None = None, backup_keep: int | None = None, ml: bool = True) -> int:
        """``ml``: start the ML services too (``obslab bench api`` leaves them out).
        ``backup_every`` (seconds): a supervised scheduler takes a backup that often, keeping
        the newest ``backup_keep`` scheduled ones (obslab/lab/backup.py)."""
        try:
            self.supervisor.check_socket_path()  # before anything is written into the directory
        except SupervisorError as exc:
            raise LabError(str(exc)) from None
        if self.running():
            raise LabError(
                f"a lab is already running from {self.data_dir} (supervisord pid {self.supervisor.pid()}); "
                "see it with `obslab status`, stop it with `obslab down`"
            )
        prometheus_binary = shutil.which("prometheus")
        alertmanager_binary = next(filter(None, map(shutil.which, ALERTMANAGER_BINARIES)), None)
        components = self._components(with_prometheus=prometheus_binary is not None, traffic=traffic,
                                      with_alertmanager=alertmanager_binary is not None, ml=ml)
        # The lab's files are its user's alone, from their creation (supervisord keeps this umask).
        os.umask(0o077)
        secrets.private_dir(self.data_dir)
        _make_private(self.data_dir)
        (self.data_dir / "run" / "jwt-secret").unlink(missing_ok=True)   # before per-lab secrets had a folder
        secrets.init_secrets(self.secrets_dir, secrets.lab_components())
        busy = [f"{comp.name} ({comp.port + self.offset})" for comp in components
                if port_in_use(comp.port + self.offset)]
        if busy:
            raise LabError(
                f"ports in use by another program: {', '.join(busy)}; stop it, or run this lab beside it "
                "with OBSLAB_PORT_OFFSET=1000 (and its own --data-dir)"
            )
        if prometheus_binary is None:
            self.say(f"! prometheus is not on PATH: the lab runs without metrics storage and exemplars. "
                     f"Install it: sudo {PROMETHEUS_INSTALL}  (`make up` does this when it can)")
        if alertmanager_binary is None:
            self.say(f"! prometheus-alertmanager is not on PATH: alerts fire in Prometheus but nobody is "
                     f"notified. Install it: sudo {PROMETHEUS_INSTALL}")

        programs = [
            # The load generator waits for the demo data: its customers signing up (Argon2, by the
            # hundred) held the seed's own sign-ups in auth's queue for up to 16 s.
            Program(comp.name, [sys.executable, "-m", "obslab.lab.launch", comp.name], priority=100 + 10 * i,
                    autostart=not (seed and comp is topology.LOAD_GENERATOR))
            for i, comp in enumerate(components) if comp not in _EXTERNAL
        ]
        if settings.PRELOAD.get():
            programs.append(Program(FORK_SERVER_PROGRAM, [
                sys.executable, "-m", "obslab.lab.forkserver", str(self.fork_server_socket),
            ], priority=50, stop_wait_seconds=int(forkserver.STOP_GRACE_SECONDS) + 5))
        if alertmanager_binary is not None:
            programs.append(self._alertmanager_program(alertmanager_binary))
        if prometheus_binary is not None:
            programs.append(self._prometheus_program(prometheus_binary, components))
        if backup_every:
            programs.append(self._backup_program(backup_every, backup_keep))
        lab = [LabComponent(comp.name, self._url(comp), self._url(comp) + comp.health_path,
                            **self._health_credentials(comp))
               for comp in components]
        self.supervisor.write_config(programs)
        self.say(f"Starting the obslab lab in {self.data_dir} ...")
        began = time.monotonic()
        try:
            self.supervisor.start(self._environment())
        except SupervisorError as exc:
            raise LabError(str(exc)) from None
        self.manifest_path.write_text(json.dumps({
            "started_at": time.time(), "port_offset": self.offset,
            "profile": self.profile.name if self.profile else None,
            "components": [asdict(item) for item in lab],
        }, indent=2))

        try:
            return self._after_start(lab, timeout=timeout, seed=seed, detach=detach, began=began)
        except KeyboardInterrupt:
            # Ctrl-C while starting means "stop": never leave a half-started lab behind.
            self.say("\nInterrupted while starting; stopping ...")
            self.down()
            return 130

    def _after_start(self, lab: list[LabComponent], *, timeout: float, seed: bool, detach: bool,
                     began: float) -> int:
        deferred = [item for item in lab if seed and item.name == c.LOAD_GENERATOR]
        self.healthy_after = {}
        unhealthy = self._wait_until_healthy([item for item in lab if item not in deferred], timeout, began)
        if not unhealthy and seed:
            self._seed()
        if deferred:
            # Started whatever happened: a lab left running, even an unhealthy one, has its traffic.
            try:
                self.supervisor.start_program(c.LOAD_GENERATOR, wait=False)
            except (OSError, xmlrpc.client.Error) as exc:
                raise LabError(f"supervisord could not start the load generator ({exc}); "
                               f"see {self.supervisor.log_path(c.LOAD_GENERATOR)}") from None
            if not unhealthy:
                left = max(30.0, timeout - (time.monotonic() - began))
                unhealthy = self._wait_until_healthy(deferred, left, began)
        if not unhealthy:
            self._report_startup()
        statuses = self.statuses()
        if unhealthy:
            self.print_table(statuses)
            for name in unhealthy:
                self._print_log_tail(name)
            self.say(f"\nNot healthy {time.monotonic() - began:.0f} s after start: {', '.join(unhealthy)}. "
                     f"Logs: {self.supervisor.log_dir}/  Stop the lab with `obslab down`.")
            return 1
        self.print_table(statuses)
        self._print_next_steps()
        if detach:
            return 0
        return self._foreground(lab)

    def _wait_until_healthy(self, lab: list[LabComponent], timeout: float, began: float) -> list[str]:
        """Poll every component until healthy; ``self.healthy_after`` records when each became so
        (seconds since supervisord was asked to start the lab)."""
        deadline = time.monotonic() + timeout
        pending = {item.name: item for item in lab}
        interactive = self.out.isatty()
        while pending and time.monotonic() < deadline:
            for name, item in list(pending.items()):
                if check_health(item.health_url, timeout=1.0, auth=item.health_auth())[0]:
                    self.healthy_after[name] = round(time.monotonic() - began, 1)
                    del pending[name]
            fatal = [name for name, proc in self.supervisor.processes().items()
                     if name in pending and proc.state == "FATAL"]
            if fatal:
                return fatal
            if pending and interactive:
                print(f"\r  waiting for {len(pending)}/{len(lab)}: {', '.join(sorted(pending))}\033[K",
                      end="", file=self.out, flush=True)
            if pending:
                time.sleep(0.25)
        if interactive:
            print("\r\033[K", end="", file=self.out, flush=True)
        return sorted(pending)

    def _report_startup(self) -> None:
        """Say how long start-up took and which components held it up; keep it in the manifest
        (``startup_seconds``, ``healthy_after``) for ``obslab bench lab``."""
        if not self.healthy_after:
            return
        total = max(self.healthy_after.values())
        slowest = sorted(self.healthy_after.items(), key=lambda item: -item[1])[:3]
        self.say(f"All {len(self.healthy_after)} components healthy {total:.1f} s after start "
                 f"(last: {', '.join(f'{name} {seconds:.1f} s' for name, seconds in slowest)}).")
        data = self._manifest_data()
        if data:
            data.update(startup_seconds=total, healthy_after=self.healthy_after)
            self.manifest_path.write_text(json.dumps(data, indent=2))

    def _seed(self) -> None:
        marker = self.data_dir / "run" / "seeded"
        try:
            operator = Signer.load(topology.OPERATOR, self.secrets_dir)
            seed_demo_data(self._url(topology.component(c.GATEWAY)), self._url(topology.component(c.ACCOUNTS)),
                           deposit_headers=lambda: operator.headers(c.ACCOUNTS))
        except (SeedError, requests.RequestException) as exc:
            self.say(f"! demo data not seeded: {exc}")
            return
        if not marker.exists():
            marker.write_text(str(time.time()))
            self.say("Seeded demo customers alice and bob (EUR checking + savings).")

    def statuses(self) -> list[ComponentStatus]:
        processes = self.supervisor.processes()
        result = []
        for item in self.manifest():
            healthy, detail = check_health(item.health_url, auth=item.health_auth())
            proc = processes.get(item.name)
            if not healthy and proc is not None and proc.state != "RUNNING":
                detail = f"{proc.state.lower()}: {detail}"
            result.append(ComponentStatus(item.name, item.url, healthy, detail))
        return result

    def print_table(self, statuses: list[ComponentStatus]) -> None:
        color = self.out.isatty()
        width = max((len(s.name) for s in statuses), default=4) + 2
        url_width = max((len(s.url) for s in statuses), default=3) + 2
        self.say(f"\n{'NAME'.ljust(width)}{'URL'.ljust(url_width)}HEALTHY")
        for status in statuses:
            mark = "yes" if status.healthy else f"no ({status.detail})"
            if color:
                mark = f"\033[32m{mark}\033[0m" if status.healthy else f"\033[31m{mark}\033[0m"
            self.say(f"{status.name.ljust(width)}{status.url.ljust(url_width)}{mark}")

    def _print_log_tail(self, name: str, lines: int = 15) -> None:
        path = self.supervisor.log_path(name)
        if not path.exists():
            return
        tail = [line for line in path.read_text(errors="replace").splitlines() if line.strip()][-lines:]
        self.say(f"\n--- last lines of {path} ---")
        for line in tail:
            self.say(line)

    def _print_next_steps(self) -> None:
        gateway = self._url(topology.component(c.GATEWAY))
        self.say(f"\nAPI: {gateway}/api/v1   demo users: alice, bob (password: see README)")
        self.say(f"Traces: {self._url(topology.TRACE_SINK)}/api/traces?service=gateway&limit=5")
        if any(item.name == c.PROMETHEUS for item in self.manifest()):
            self.say(f"Prometheus: {self._url(topology.PROMETHEUS)}   alerts: {self._url(topology.PROMETHEUS)}/alerts")
        if any(item.name == c.ALERTMANAGER for item in self.manifest()):
            self.say(f"Alertmanager: {self._url(topology.ALERTMANAGER)}   notifications: "
                     f"{self._url(topology.ALERT_RECEIVER)}/  (or `obslab alerts`)")
        self.say(f"Logs: {self.supervisor.log_dir}/")

    def _foreground(self, lab: list[LabComponent]) -> int:
        self.say("\nRunning in the foreground; press Ctrl-C to stop everything.")
        stop = _StopSignal()
        last = {s.name: s.healthy for s in self.statuses()}
        try:
            while not stop.requested:
                stop.wait(5.0)
                if stop.requested:
                    break
                if not self.running():
                    self.say("supervisord is gone; the lab has stopped.")
                    return 1
                for status in self.statuses():
                    if last.get(status.name) != status.healthy:
                        state = "healthy again" if status.healthy else f"UNHEALTHY ({status.detail})"
                        self.say(f"{time.strftime('%H:%M:%S')} {status.name}: {state}")
                        last[status.name] = status.healthy
        finally:
            stop.restore()
        self.say("\nStopping ...")
        self.down()
        return 0

    def down(self) -> int:
        if not self.running():
            self.manifest_path.unlink(missing_ok=True)
            self.say(f"No lab is running from {self.data_dir}.")
            return 0
        self.supervisor.shutdown()
        self.manifest_path.unlink(missing_ok=True)
        self.say("Lab stopped.")
        return 0


def _make_private(directory: Path) -> None:
    """Take group and other permissions off what an older lab created under ``directory`` (new
    files are private from their creation; see the umask in :meth:`NativeLab.up`)."""
    for path in [directory, *directory.rglob("*")]:
        try:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                path.chmod(stat.S_IMODE(mode) & 0o700)
        except OSError:
            pass  # a file that went away meanwhile (an old socket, a rotated log)


class _StopSignal:
    """Turns SIGINT/SIGTERM into a flag the foreground loop polls, so shutdown is orderly."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Callable | int | None] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, _signum: int, _frame: object) -> None:
        self.requested = True

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(0.1)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
