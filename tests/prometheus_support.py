"""A real Prometheus for tests: the OS binary on a free loopback port, a temporary data directory.

>>> server = start_prometheus(tmp_path, scrape_configs=[scrape_job("iis-mock", "127.0.0.1:9182", "1s")])
>>> server.query("up")            # -> the API's result list
>>> server.stop()                 # always: every test stops what it started
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.support import free_port, stop_process


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: run `obslab doctor --install`"
    return binary


def scrape_job(name: str, target: str, interval: str = "1s", labels: dict[str, str] | None = None) -> dict:
    config: dict[str, Any] = {"job_name": name, "scrape_interval": interval, "scrape_timeout": interval,
                              "static_configs": [{"targets": [target]}]}
    if labels:
        config["static_configs"][0]["labels"] = labels
    return config


@dataclass
class PrometheusServer:
    url: str
    data_dir: Path
    process: subprocess.Popen
    log_path: Path

    def api(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr} if at is None else {"query": expr, "time": at}
        return self.api("query", **params)["result"]

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        """The value of a one-element query, or None when it returns nothing."""
        result = self.query(expr, at)
        return float(result[0]["value"][1]) if result else None

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]

    def wait_for(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus: {what} not seen within {timeout} s; log: {self.log_tail()}")
            time.sleep(0.5)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        stop_process(self.process, timeout=15)


def start_prometheus(workdir: Path, *, scrape_configs: Sequence[dict] = (), data_dir: Path | None = None,
                     scrape_interval: str = "15s", timeout: float = 30.0, port: int | None = None,
                     extra_args: Sequence[str] = (), rule_files: Sequence[str] = ()) -> PrometheusServer:
    """Start Prometheus and wait until it is ready; the caller must ``stop()`` it.

    ``port``: a port chosen beforehand (for a config that scrapes Prometheus itself);
    ``rule_files``: paths or globs it evaluates every ``scrape_interval``."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir or workdir / "prometheus-data"
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump({
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": list(rule_files),
        "scrape_configs": list(scrape_configs),
    }))
    port = port or free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([
            prometheus_binary(), f"--config.file={config_path}", f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", *extra_args,
        ], stdout=log, stderr=subprocess.STDOUT)
    server = PrometheusServer(f"http://127.0.0.1:{port}", data_dir, process, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"Prometheus exited with {process.returncode}: {server.log_tail()}")
        try:
            if requests.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return server
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"Prometheus not ready within {timeout} s: {server.log_tail()}")
        time.sleep(0.2)
