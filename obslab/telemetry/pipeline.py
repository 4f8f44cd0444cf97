"""Metrics about a service's own span pipeline: spans exported (by outcome) and spans dropped.

Both land in the service's :class:`MetricSet`, so they appear on that service's /metrics and an
alert can tell "the collector refuses spans" (exports fail) from "the exporter cannot keep up"
(the batch processor's queue overflows) per service.

Drops are counted without reaching into the SDK's private state: the batch span processor
reports them itself, through its public ``meter_provider`` argument, as the semantic convention
counter ``otel.sdk.processor.span.processed{error.type="queue_full"}`` once
``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED`` is true. :class:`DropCountingMeterProvider` is a
no-op meter provider except for that one counter, which it forwards to Prometheus.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Meter, NoOpCounter, NoOpMeter, NoOpMeterProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.semconv._incubating.metrics.otel_metrics import OTEL_SDK_PROCESSOR_SPAN_PROCESSED
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.util.types import Attributes
import prometheus_client

from obslab import conventions as c

if TYPE_CHECKING:
    from obslab.telemetry.metrics import MetricSet

log = logging.getLogger(__name__)

# The error.type the SDK's batch processor gives a span it had no room for (it also reports
# "already_shutdown" for spans ended after shutdown: not a capacity problem, not counted).
_QUEUE_FULL = "queue_full"


class CountingSpanExporter(SpanExporter):
    """Counts the spans of every export call by outcome; contains an exporter that raises.

    Outermost in the chain, so a failure anywhere inside (redaction included) counts.

    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> from obslab.telemetry import MetricSet
    >>> metrics = MetricSet(process_metrics=False)
    >>> exporter = CountingSpanExporter(InMemorySpanExporter(), metrics, "fraud")
    >>> metrics.registry.get_sample_value(
    ...     "telemetry_spans_exported_total", {"service": "fraud", "outcome": "failure"})
    0.0
    """

    def __init__(self, inner: SpanExporter, metrics: MetricSet, service: str) -> None:
        self.inner = inner
        family = metrics.counter(c.SPANS_EXPORTED)
        # Both outcomes exist at 0 from the start, so rate() and a failure ratio work at once.
        self._success = family.labels(service=service, outcome=c.SPAN_EXPORT_SUCCESS)
        self._failure = family.labels(service=service, outcome=c.SPAN_EXPORT_FAILURE)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:  # the batch processor's thread must live on to export the next batch
            log.exception("span export raised; %d spans lost", len(spans))
            result = SpanExportResult.FAILURE
        (self._success if result is SpanExportResult.SUCCESS else self._failure).inc(len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _QueueFullCounter(NoOpCounter):
    def __init__(self, name: str, unit: str, description: str, dropped: prometheus_client.Counter) -> None:
        super().__init__(name, unit=unit, description=description)
        self._dropped = dropped

    def add(self, amount: float, attributes: Attributes = None, context: Context | None = None) -> None:
        if attributes and attributes.get(ERROR_TYPE) == _QUEUE_FULL:
            self._dropped.inc(amount)


class _DropCountingMeter(NoOpMeter):
    def __init__(self, name: str, dropped: prometheus_client.Counter, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self._dropped = dropped

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Counter:
        counter = super().create_counter(name, unit=unit, description=description)
        if name != OTEL_SDK_PROCESSOR_SPAN_PROCESSED:
            return counter
        return _QueueFullCounter(name, unit, description, self._dropped)


class DropCountingMeterProvider(NoOpMeterProvider):
    """Give to ``BatchSpanProcessor(meter_provider=...)``: its queue-full drops count in
    ``telemetry_spans_dropped_total{service}`` (at 0 from the start); all else is no-op.

    The processor only reports when ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED`` is true at its
    construction (:func:`obslab.telemetry.tracing.span_processor` sees to that).

    >>> from obslab.telemetry import MetricSet
    >>> metrics = MetricSet(process_metrics=False)
    >>> meter = DropCountingMeterProvider(metrics, "fraud").get_meter("opentelemetry-sdk")
    >>> meter.create_counter("otel.sdk.processor.span.processed").add(2, {"error.type": "queue_full"})
    >>> metrics.registry.get_sample_value("telemetry_spans_dropped_total", {"service": "fraud"})
    2.0
    """

    def __init__(self, metrics: MetricSet, service: str) -> None:
        self._dropped = metrics.counter(c.SPANS_DROPPED).labels(service=service)

    def get_meter(
        self, name: str, version: str | None = None, schema_url: str | None = None, attributes: Attributes = None,
    ) -> Meter:
        return _DropCountingMeter(name, self._dropped, version=version, schema_url=schema_url)
