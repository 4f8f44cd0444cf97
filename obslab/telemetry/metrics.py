"""Prometheus metrics from the specs in :mod:`obslab.conventions`, with trace exemplars.

Each app owns a :class:`MetricSet` on its own registry (so two apps in one test process do not
collide). Exemplars carry ``trace_id`` and ``span_id`` of the active sampled span; Prometheus
only receives them when it scrapes in OpenMetrics format, which :func:`exposition` serves when
the scraper's ``Accept`` header asks for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase

from obslab.conventions import MetricSpec
from obslab.telemetry.tracing import current_trace_ids


def exemplar() -> dict[str, str] | None:
    """Exemplar labels linking a sample to the active trace, or None outside a sampled span."""
    ids = current_trace_ids()
    if ids is None:
        return None
    return {"trace_id": ids[0], "span_id": ids[1]}


class MetricSet:
    """The metric families one process exposes, created from their specs on first use.

    >>> from obslab import conventions as c
    >>> metrics = MetricSet()
    >>> metrics.counter(c.TRANSACTION_REQUESTS).labels(type="transfer", status="completed").inc()
    >>> metrics.registry.get_sample_value(
    ...     "transaction_requests_total", {"type": "transfer", "status": "completed"})
    1.0
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = True) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._families: dict[str, MetricWrapperBase] = {}
        self._lock = threading.Lock()
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def declare(self, specs: Iterable[MetricSpec]) -> None:
        """Create families up front so they appear on /metrics before the first event."""
        for spec in specs:
            self._get(spec)

    def _get(self, spec: MetricSpec) -> MetricWrapperBase:
        family = self._families.get(spec.name)
        if family is not None:
            return family
        with self._lock:
            family = self._families.get(spec.name)
            if family is None:
                family = self._create(spec)
                self._families[spec.name] = family
            return family

    def _create(self, spec: MetricSpec) -> MetricWrapperBase:
        if spec.kind == "counter":
            return Counter(spec.name, spec.help, spec.labels, registry=self.registry)
        if spec.kind == "gauge":
            return Gauge(spec.name, spec.help, spec.labels, registry=self.registry)
        return Histogram(
            spec.name, spec.help, spec.labels, registry=self.registry,
            buckets=spec.buckets or Histogram.DEFAULT_BUCKETS,
        )

    def counter(self, spec: MetricSpec) -> Counter:
        if spec.kind != "counter":
            raise TypeError(f"{spec.name} is a {spec.kind}, not a counter")
        return self._get(spec)  # type: ignore[return-value]

    def gauge(self, spec: MetricSpec) -> Gauge:
        if spec.kind != "gauge":
            raise TypeError(f"{spec.name} is a {spec.kind}, not a gauge")
        return self._get(spec)  # type: ignore[return-value]

    def histogram(self, spec: MetricSpec) -> Histogram:
        if spec.kind != "histogram":
            raise TypeError(f"{spec.name} is a {spec.kind}, not a histogram")
        return self._get(spec)  # type: ignore[return-value]

    def count(self, spec: MetricSpec, amount: float = 1.0, **labels: str) -> None:
        """Increment a counter, attaching the current trace as exemplar."""
        child = self.counter(spec).labels(**labels) if labels else self.counter(spec)
        child.inc(amount, exemplar=exemplar())

    def observe(self, spec: MetricSpec, value: float, **labels: str) -> None:
        """Observe into a histogram, attaching the current trace as exemplar."""
        child = self.histogram(spec).labels(**labels) if labels else self.histogram(spec)
        child.observe(value, exemplar=exemplar())


def exposition(registry: CollectorRegistry, accept_header: str | None) -> tuple[bytes, str]:
    """Body and content type for a scrape: OpenMetrics (with exemplars) when asked for."""
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(registry), content_type
