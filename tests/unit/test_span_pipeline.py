"""The span pipeline counts what it exports (by outcome) and what its full queue drops.

Each test builds the real pipeline (:func:`span_processor`: batch processor, counting and
redacting exporters) on a tracer provider of its own; the process-wide provider is the tests'.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.environment_variables import OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from obslab import conventions as c
from obslab.telemetry import MetricSet
from obslab.telemetry.pipeline import CountingSpanExporter
from obslab.telemetry.tracing import EXPORT_BATCH_SPANS, span_processor

SERVICE = "fraud"


@pytest.fixture(autouse=True)
def sdk_switch(monkeypatch):
    # span_processor sets the SDK's self-metrics switch in os.environ; undo that after each test.
    monkeypatch.delenv(OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED, raising=False)


def exported(metrics: MetricSet, outcome: str) -> float | None:
    return metrics.registry.get_sample_value(
        c.SPANS_EXPORTED.name, {c.L_SERVICE: SERVICE, c.L_OUTCOME: outcome})


def dropped(metrics: MetricSet) -> float | None:
    return metrics.registry.get_sample_value(c.SPANS_DROPPED.name, {c.L_SERVICE: SERVICE})


def emit(provider: TracerProvider, count: int, **attributes: str) -> None:
    tracer = provider.get_tracer("test")
    for i in range(count):
        with tracer.start_as_current_span(f"span-{i}", attributes=attributes):
            pass


class Failing(SpanExporter):
    """Answers FAILURE (a collector that refuses), or raises (a broken exporter)."""

    def __init__(self, raises: bool) -> None:
        self.raises = raises
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.raises:
            raise ConnectionError("collector gone")
        return SpanExportResult.FAILURE


class Blocking(InMemorySpanExporter):
    """Holds the batch processor's thread inside export until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        assert self.release.wait(10), "test never released the exporter"
        return super().export(spans)


def pipeline(exporter: SpanExporter, metrics: MetricSet) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(span_processor(exporter, SERVICE, metrics))
    return provider


def test_both_outcomes_and_drops_exist_at_zero_before_any_span():
    metrics = MetricSet(process_metrics=False)
    provider = pipeline(InMemorySpanExporter(), metrics)
    try:
        assert exported(metrics, c.SPAN_EXPORT_SUCCESS) == 0
        assert exported(metrics, c.SPAN_EXPORT_FAILURE) == 0
        assert dropped(metrics) == 0
    finally:
        provider.shutdown()


def test_successful_exports_count_their_spans_which_arrive_redacted():
    metrics = MetricSet(process_metrics=False)
    sink = InMemorySpanExporter()
    provider = pipeline(sink, metrics)
    try:
        emit(provider, 4, account="acc_abcdefgh12345678")
        emit(provider, 3)
        assert provider.force_flush(5_000)
        assert exported(metrics, c.SPAN_EXPORT_SUCCESS) == 7
        assert exported(metrics, c.SPAN_EXPORT_FAILURE) == 0
        spans = sink.get_finished_spans()
        assert len(spans) == 7
        assert {s.attributes.get("account") for s in spans} == {"acc_****5678", None}
    finally:
        provider.shutdown()


@pytest.mark.parametrize("raises", [False, True], ids=["returns-failure", "raises"])
def test_failed_exports_count_their_spans_as_failure(raises):
    metrics = MetricSet(process_metrics=False)
    exporter = Failing(raises)
    provider = pipeline(exporter, metrics)
    try:
        emit(provider, 5)
        assert provider.force_flush(5_000)
        assert exporter.calls >= 1
        assert exported(metrics, c.SPAN_EXPORT_FAILURE) == 5
        assert exported(metrics, c.SPAN_EXPORT_SUCCESS) == 0
        # The processor's thread survived: the next batch is exported (and counted) as well.
        emit(provider, 2)
        assert provider.force_flush(5_000)
        assert exported(metrics, c.SPAN_EXPORT_FAILURE) == 7
    finally:
        provider.shutdown()


def test_an_exporter_that_raises_answers_failure_instead_of_raising():
    finished = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(finished))
    emit(provider, 3)
    metrics = MetricSet(process_metrics=False)
    counting = CountingSpanExporter(Failing(raises=True), metrics, SERVICE)
    assert counting.export(finished.get_finished_spans()) is SpanExportResult.FAILURE
    assert exported(metrics, c.SPAN_EXPORT_FAILURE) == 3


def test_spans_dropped_on_a_full_queue_are_counted(monkeypatch):
    # One span per batch, room for two in the queue, no timer: the exporter decides the pace.
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "2")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    metrics = MetricSet(process_metrics=False)
    exporter = Blocking()
    provider = pipeline(exporter, metrics)
    try:
        emit(provider, 1)
        assert exporter.entered.wait(5), "the batch processor never started exporting"
        emit(provider, 5)           # 2 fit in the queue, 3 do not
        assert dropped(metrics) == 3
        exporter.release.set()
        assert provider.force_flush(5_000)
        assert exported(metrics, c.SPAN_EXPORT_SUCCESS) == 3
        assert len(exporter.get_finished_spans()) == 3
        assert dropped(metrics) == 3
    finally:
        exporter.release.set()
        provider.shutdown()


def test_drops_are_not_counted_when_the_sdk_self_metrics_are_switched_off(monkeypatch):
    monkeypatch.setenv(OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED, "false")
    metrics = MetricSet(process_metrics=False)
    provider = pipeline(InMemorySpanExporter(), metrics)
    try:
        assert dropped(metrics) is None     # absent rather than a 0 that could never move
        assert exported(metrics, c.SPAN_EXPORT_SUCCESS) == 0
    finally:
        provider.shutdown()


class BatchSizes(InMemorySpanExporter):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.sizes.append(len(spans))
        return super().export(spans)


@pytest.mark.parametrize("configured, largest", [(None, EXPORT_BATCH_SPANS), ("100", 100)])
def test_spans_leave_in_small_batches_unless_the_environment_says_otherwise(monkeypatch, configured, largest):
    # Small batches keep the export thread's hold on the GIL short (the requests' tail latency).
    if configured is None:
        monkeypatch.delenv(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, raising=False)
    else:
        monkeypatch.setenv(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, configured)
    sink = BatchSizes()
    provider = pipeline(sink, MetricSet(process_metrics=False))
    try:
        emit(provider, 300)
        assert provider.force_flush(5_000)
    finally:
        provider.shutdown()
    assert sum(sink.sizes) == 300 and max(sink.sizes) == largest, sink.sizes
