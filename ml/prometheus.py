"""The ML services' only way to read metrics: PromQL instant and range queries over HTTP.

Every failure (Prometheus down, slow, a bad expression, an empty answer) is one exception type
with a message an operator can act on, so a detector can report *stale* instead of computing
on garbage. Empty results are not errors: a counter with no series yet is a real zero for a
``sum``, but a missing input for a ratio; the caller decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import requests

DEFAULT_TIMEOUT_SECONDS = 5.0
# Prometheus refuses range queries of more than 11,000 points per series.
MAX_POINTS_PER_QUERY = 11_000


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not answer: not reachable, timed out, or refused the query."""


@dataclass(frozen=True)
class RangeResult:
    """One expression over ``timestamps``: one row per returned series (NaN where absent)."""

    timestamps: np.ndarray
    labels: list[dict[str, str]]
    values: np.ndarray   # shape (len(labels), len(timestamps))


class PrometheusClient:
    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def _get(self, path: str, params: dict[str, str]) -> dict:
        try:
            response = self.session.get(f"{self.base_url}{path}", params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.base_url} unreachable: {type(exc).__name__}") from exc
        try:
            body = response.json()
        except ValueError:
            raise PrometheusUnavailable(
                f"Prometheus at {self.base_url} answered HTTP {response.status_code} without JSON") from None
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusUnavailable(
                f"Prometheus refused {params.get('query', '')!r}: {body.get('error', response.status_code)}")
        return body["data"]

    def ready(self) -> None:
        try:
            response = self.session.get(f"{self.base_url}/-/ready", timeout=self.timeout)
        except requests.RequestException as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.base_url} unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise PrometheusUnavailable(f"Prometheus at {self.base_url} not ready: HTTP {response.status_code}")

    def instant(self, expr: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def scalar(self, expr: str, at: float | None = None) -> float:
        """The single value of ``expr`` (NaN when it returns nothing)."""
        result = self.instant(expr, at)
        if not result:
            return math.nan
        if len(result) > 1:
            raise PrometheusUnavailable(f"{expr!r} returned {len(result)} series where one was expected")
        return result[0][1]

    def range(self, expr: str, start: float, end: float, step: float) -> RangeResult:
        """``expr`` at every ``step`` from ``start`` to ``end``, split into several queries
        when the range holds more points than Prometheus answers at once."""
        step = max(step, 0.001)
        timestamps = np.arange(start, end + step / 2, step)
        series: dict[tuple, tuple[dict[str, str], np.ndarray]] = {}
        chunk = MAX_POINTS_PER_QUERY - 1
        for first in range(0, len(timestamps), chunk + 1):
            part = timestamps[first:first + chunk + 1]
            data = self._get("/api/v1/query_range", {
                "query": expr, "start": f"{part[0]:.3f}", "end": f"{part[-1]:.3f}", "step": f"{step:g}",
            })
            for item in data["result"]:
                key = tuple(sorted(item["metric"].items()))
                _, row = series.setdefault(key, (item["metric"], np.full(len(timestamps), np.nan)))
                for ts, value in item["values"]:
                    index = int(round((float(ts) - start) / step))
                    if 0 <= index < len(timestamps):
                        row[index] = float(value)
        labels = [metric for metric, _ in series.values()]
        values = np.array([row for _, row in series.values()]) if series else np.empty((0, len(timestamps)))
        return RangeResult(timestamps, labels, values)
