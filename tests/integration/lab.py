"""Driving real native labs (``obslab up``) from tests: processes, ports, the trace sink."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from obslab import conventions as c
from obslab import topology
from obslab import settings
from obslab.lab.native import port_in_use
from obslab.lab.seed import patient_session


def eventually(check: Callable[[], Any], timeout: float, what: str | Callable[[], str],
               interval: float = 1.0) -> Any:
    """``check()``'s first truthy result within ``timeout`` seconds, or an AssertionError saying
    ``what`` (a callable may describe what was seen meanwhile) and the last result."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    described = what() if callable(what) else what
    raise AssertionError(f"{described}: not within {timeout:.0f} s (last: {last!r})")


def free_offset(start: int) -> int:
    """An offset at which every port of a lab is free (labs of other tests may be running), from
    ``start`` up, every port below the kernel's ephemeral range (where any outgoing connection of
    this busy machine may hold one)."""
    highest = settings.max_port_offset()
    candidates = [*range(start, highest + 1, 250), *range(1_000, min(start, highest + 1), 250)]
    for offset in candidates:
        if not any(port_in_use(port + offset) for port in topology.DEFAULT_PORTS.values()):
            return offset
    raise RuntimeError(f"no free port range for a test lab below {settings.EPHEMERAL_PORTS_START}")


def obslab(*args: str, offset: int, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OBSLAB_PORT_OFFSET": str(offset), **(env or {})}
    return subprocess.run([sys.executable, "-m", "obslab", *args], capture_output=True, text=True,
                          timeout=timeout, env=environment)


@dataclass
class RunningLab:
    data_dir: Path
    offset: int

    def url(self, component: str) -> str:
        return f"http://127.0.0.1:{topology.DEFAULT_PORTS[component] + self.offset}"

    @property
    def api(self) -> str:
        return self.url(c.GATEWAY) + c.API_PREFIX

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return obslab(*args, "--data-dir", str(self.data_dir), offset=self.offset, timeout=timeout)

    def login(self, username: str, password: str = "demo-password") -> requests.Session:
        # As a person would: an overloaded auth (503 with Retry-After, e.g. while the load
        # generator signs its customers up) is waited out, not a failed login.
        session = patient_session()
        response = session.post(f"{self.api}/auth/login", json={"username": username, "password": password},
                                timeout=10)
        assert response.status_code == 200, response.text
        session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        return session

    def wait_for_trace(self, trace_id: str, services: set[str], timeout: float = 30) -> list[dict]:
        """The trace's spans once it is complete: spans of every named service, a root, and every
        parent present (each process exports in its own batches, so spans arrive piecemeal)."""
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            response = requests.get(f"{self.url(c.TRACE_SINK)}/api/traces/{trace_id}", timeout=5)
            if response.status_code == 200:
                trace = response.json()["data"][0]
                processes = trace["processes"]
                spans = [{**span, "service": processes[span["processID"]]["serviceName"]} for span in trace["spans"]]
                seen = {span["service"] for span in spans}
                ids = {span["spanID"] for span in spans}
                parents = {ref["spanID"] for span in spans for ref in span["references"]}
                has_root = any(not span["references"] for span in spans)
                if services <= seen and has_root and parents <= ids:
                    return spans
            time.sleep(0.5)
        raise AssertionError(f"trace {trace_id}: only spans of {sorted(seen)} after {timeout} s")

    def alertmanager_auth(self) -> tuple[str, str]:
        """The basic auth this lab's Alertmanager answers (its API, /-/ready included): the web
        user and the password `obslab up` generated in the lab's secrets."""
        from obslab import secrets

        return (secrets.ALERTMANAGER_WEB_USER,
                secrets.alertmanager_web_password(secrets.secrets_dir(self.data_dir)))

    def alertmanager(self, path: str, **params) -> Any:
        """GET ``path`` of this lab's Alertmanager, authenticated; its JSON."""
        response = requests.get(f"{self.url(c.ALERTMANAGER)}{path}", params=params, auth=self.alertmanager_auth(),
                                timeout=5)
        response.raise_for_status()
        return response.json()

    def prometheus(self, path: str, **params) -> dict:
        response = requests.get(f"{self.url(c.PROMETHEUS)}{path}", params=params, timeout=10)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        return self.prometheus("/api/v1/query", query=promql)["result"]

    def value(self, promql: str) -> float | None:
        """The first sample's value, or None when the query returns nothing."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def firing(self, alertname: str, **labels: str) -> list[dict]:
        selector = ",".join([f'alertname="{alertname}"', 'alertstate="firing"',
                             *(f'{k}="{v}"' for k, v in labels.items())])
        return self.query(f"ALERTS{{{selector}}}")

    def fault(self, *args: str) -> subprocess.CompletedProcess:
        """`obslab fault ...` against this lab (its injector by the offset, its token by the data dir)."""
        return obslab("fault", "--data-dir", str(self.data_dir), *args, offset=self.offset, timeout=30)

    def set_fault(self, *args: str) -> dict:
        """`obslab fault set ... --json` as a user types it (it finds the injector by the offset, and
        the lab's control token in the data directory)."""
        result = self.fault("set", *args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def clear_fault(self, fault_id: str) -> None:
        result = self.fault("clear", fault_id)
        assert result.returncode == 0, result.stderr

    def ledger_violations(self) -> list[str]:
        """What in the running lab's books no legitimate operation could have written, asked as
        the lab's operator (its key is in the lab's data directory)."""
        from obslab import secrets
        from obslab.platform.identity import Signer

        operator = Signer.load(topology.OPERATOR, secrets.secrets_dir(self.data_dir))
        response = requests.get(f"{self.url(c.ACCOUNTS)}/ledger/invariants", headers=operator.headers(c.ACCOUNTS),
                                timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["violations"]

    def stop(self) -> None:
        """Clear every fault, check the books, stop the lab: after any run, they must be sound."""
        self.fault("clear", "--all")
        violations = self.ledger_violations()
        result = self.run("down")
        assert result.returncode == 0, result.stderr
        assert violations == [], violations

    def log_lines(self, component: str) -> list[dict]:
        lines = []
        for raw in (self.data_dir / "logs" / f"{component}.log").read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        return lines


def start_lab(data_dir: Path, offset: int, *extra: str, env: dict | None = None) -> RunningLab:
    result = obslab("up", "--detach", "--profile", "fast", "--data-dir", str(data_dir), *extra, offset=offset,
                    env=env)
    lab = RunningLab(data_dir, offset)
    if result.returncode != 0:
        lab.run("down")
        raise AssertionError(f"obslab up failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return lab
