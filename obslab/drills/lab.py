"""How a drill reaches the lab it runs against: Prometheus, Alertmanager, the alert-receiver, the
fault-injector, and (for ``stop`` steps) the process supervisor.

The native lab is found through its manifest (``<data dir>/run/lab.json``: URLs, profile); a
compose lab through the default ports, with the secrets given by ``--data-dir`` or the
environment. Every failure is a :class:`DrillError` with one line that says what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from obslab import conventions as c
from obslab import secrets, settings
from obslab import topology
from obslab.profiles import PROFILES, Profile
from obslab.settings import ConfigError, parse_duration

START_HINT = "start one with `obslab up --detach --profile fast`"
COMPOSE_SERVICES = {c.TRACE_SINK: "otel-collector"}


class DrillError(Exception):
    """A problem the user can fix; printed as one line."""


@dataclass
class Lab:
    data_dir: Path
    urls: dict[str, str]
    profile: Profile
    runtime: str                                  # "native" or "compose"
    operator_token: str = field(repr=False)
    alertmanager_auth: tuple[str, str] | None = field(repr=False)
    session: requests.Session = field(default_factory=requests.Session)

    # --- finding it --------------------------------------------------------------------------

    @classmethod
    def connect(cls, data_dir: Path) -> Lab:
        manifest_path = data_dir / "run" / "lab.json"
        manifest: dict[str, Any] = {}
        if manifest_path.exists():
            try:
                manifest = json.loads(manifest_path.read_text())
            except ValueError:
                manifest = {}
        if manifest.get("components"):
            urls = {item["name"]: item["url"].rstrip("/") for item in manifest["components"]}
            runtime = "native"
        else:
            urls = {name: settings.service_url(name) for name in
                    (c.PROMETHEUS, c.ALERTMANAGER, c.ALERT_RECEIVER, c.FAULT_INJECTOR)}
            runtime = "compose"
        missing = [name for name in (c.PROMETHEUS, c.ALERTMANAGER, c.ALERT_RECEIVER, c.FAULT_INJECTOR)
                   if name not in urls]
        if missing:
            raise DrillError(f"the lab in {data_dir} runs without {', '.join(missing)}; drills need Prometheus, "
                             f"Alertmanager, the alert-receiver and the fault-injector; {START_HINT}")
        directory = secrets.secrets_dir(data_dir) if runtime == "native" else (
            Path(os.environ["COMPOSE_SECRETS_DIR"]) if os.environ.get("COMPOSE_SECRETS_DIR")
            else secrets.secrets_dir(data_dir))
        try:
            token = secrets.control_token(topology.OPERATOR, directory)
        except ConfigError as exc:
            raise DrillError(f"no operator token for the lab ({exc}); {START_HINT}") from None
        password = settings.ALERTMANAGER_PASSWORD.get()
        if not password:
            try:
                password = secrets.alertmanager_web_password(directory)
            except ConfigError:
                password = None
        auth = (secrets.ALERTMANAGER_WEB_USER, password) if password else None
        session = requests.Session()
        session.trust_env = False     # loopback only; never through a proxy
        lab = cls(data_dir, urls, PROFILES["production"], runtime, token, auth, session)
        lab.profile = lab._detect_profile(manifest.get("profile"))
        return lab

    def _detect_profile(self, recorded: str | None) -> Profile:
        """The manifest's profile, else the one whose evaluation interval Prometheus runs at."""
        if recorded in PROFILES:
            return PROFILES[recorded]
        try:
            config = self.prometheus("/api/v1/status/config")["yaml"]
        except DrillError:
            # Prometheus down (a drill stopped it): commands that only clean up still work; a
            # run finds out soon enough that it cannot observe anything.
            return PROFILES["production"]
        for line in config.splitlines():
            if line.strip().startswith("evaluation_interval:"):
                seconds = parse_duration(line.split(":", 1)[1].strip())
                for profile in PROFILES.values():
                    if profile.evaluation_s == seconds:
                        return profile
        return PROFILES["production"]

    def check(self) -> None:
        """Every component a drill watches answers; else one line that says how to start a lab."""
        self.prometheus("/api/v1/status/buildinfo")
        self.notifications(limit=1)
        self.active_faults()
        try:
            self.alertmanager_alerts()
        except DrillError as exc:
            # Only `inhibited: true` checks need it; say so once, do not refuse to run.
            print(f"obslab: warning: {exc}; inhibitions are judged by deliveries alone "
                  f"(set ${settings.ALERTMANAGER_PASSWORD.name} for a compose lab)", file=sys.stderr)

    # --- HTTP ----------------------------------------------------------------------------------

    def _get(self, component: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.urls[component]}{path}"
        try:
            response = self.session.get(url, timeout=10, **kwargs)
        except requests.RequestException:
            raise DrillError(f"the lab's {component} does not answer at {self.urls[component]}; is a lab running? "
                             f"(`obslab status`; {START_HINT})") from None
        if response.status_code >= 400:
            raise DrillError(f"{component} answered HTTP {response.status_code} to {path}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError:
            raise DrillError(f"{component} answered {path} with something that is not JSON") from None

    def prometheus(self, path: str, **params: Any) -> Any:
        body = self._get(c.PROMETHEUS, path, params=params)
        if body.get("status") != "success":
            raise DrillError(f"Prometheus refused {path}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        return self.prometheus("/api/v1/query", query=promql)["result"]

    def prometheus_alerts(self) -> list[dict]:
        """Every pending and firing alert Prometheus holds (labels, state, activeAt)."""
        return self.prometheus("/api/v1/alerts")["alerts"]

    def alertmanager_alerts(self) -> list[dict]:
        return self._get(c.ALERTMANAGER, "/api/v2/alerts", auth=self.alertmanager_auth)

    def notifications(self, limit: int = 1000) -> list[dict]:
        return self._get(c.ALERT_RECEIVER, "/api/v1/notifications", params={"limit": limit})

    def _control(self, method: str, component: str, path: str, body: Any = None) -> Any:
        url = f"{self.urls[component]}{path}"
        try:
            response = self.session.request(method, url, json=body, timeout=10, headers={
                "Authorization": f"Bearer {self.operator_token}", c.HEADER_ACTOR: "obslab drill"})
        except requests.RequestException:
            raise DrillError(f"the lab's {component} does not answer at {self.urls[component]}; {START_HINT}") \
                from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            message = body.get("message") if isinstance(body, dict) else response.text[:200]
            raise DrillError(f"{component} refused {method} {path}: {message} (HTTP {response.status_code})")
        return response.json() if response.content else None

    def set_fault(self, body: dict[str, Any]) -> dict:
        return self._control("POST", c.FAULT_INJECTOR, f"{c.API_PREFIX}/faults", body)

    def clear_fault(self, fault_id: str) -> None:
        try:
            self._control("DELETE", c.FAULT_INJECTOR, f"{c.API_PREFIX}/faults/{fault_id}")
        except DrillError as exc:
            if "HTTP 404" not in str(exc):
                raise

    def active_faults(self) -> list[dict]:
        return self._control("GET", c.FAULT_INJECTOR, f"{c.API_PREFIX}/faults")

    def post_receiver(self, path: str, body: dict[str, Any]) -> None:
        """Best effort: a report or event the receiver shows (a receiver that is down loses no drill)."""
        try:
            self._control("POST", c.ALERT_RECEIVER, path, body)
        except DrillError:
            pass

    # --- components ----------------------------------------------------------------------------

    def stop(self, component: str) -> None:
        self._supervise("stop", component)

    def start(self, component: str) -> None:
        self._supervise("start", component)

    def _supervise(self, action: str, component: str) -> None:
        if self.runtime == "native":
            from obslab.lab.supervisor import Supervisor, SupervisorError

            supervisor = Supervisor(self.data_dir)
            try:
                if action == "stop":
                    supervisor.stop_program(component)
                else:
                    state = supervisor.processes().get(component)
                    if state is None or state.state != "RUNNING":
                        supervisor.start_program(component)
            except (SupervisorError, OSError) as exc:
                raise DrillError(f"could not {action} {component}: {exc}") from None
            except Exception as exc:  # xmlrpc faults (already started/stopped) are not a failure
                if "ALREADY_STARTED" not in str(exc) and "NOT_RUNNING" not in str(exc):
                    raise DrillError(f"could not {action} {component}: {exc}") from None
            return
        docker = shutil.which("docker")
        if docker is None:
            raise DrillError(f"cannot {action} {component}: no docker command for the compose lab")
        # The Collector stands where the native lab's trace sink does (docker-compose.yml).
        service = COMPOSE_SERVICES.get(component, component)
        result = subprocess.run([docker, "compose", "-f", str(settings.repo_root() / "docker-compose.yml"),
                                 action, service], capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise DrillError(f"docker compose {action} {component} failed: {result.stderr.strip()[:200]}")

    def wait_healthy(self, component: str, timeout: float = 60.0) -> bool:
        """After a ``start``: wait until the component answers its readiness probe again."""
        url = self.urls.get(component)
        if url is None:
            return True
        path = "/-/ready" if component in (c.PROMETHEUS, c.ALERTMANAGER) else "/ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                auth = self.alertmanager_auth if component == c.ALERTMANAGER else None
                if self.session.get(f"{url}{path}", timeout=2, auth=auth).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.5)
        return False
