"""Tracing for every service: one SDK tracer provider per process, configured once.

Precedence is argument > environment > default everywhere:

* the exporter honours the standard variables (``OTEL_TRACES_EXPORTER`` = otlp|console|none,
  ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, ``..._PROTOCOL`` = http/protobuf|grpc,
  ``..._TIMEOUT``, ``..._HEADERS``, ``OTEL_BSP_*``, ``OTEL_TRACES_SAMPLER[_ARG]``);
* without an endpoint anywhere, spans go to the native trace sink of this lab;
* ``OTEL_SDK_DISABLED=true`` turns tracing and all instrumentation off.

Spans leave the process on the batch processor's thread, so a slow or dead collector costs the
request path nothing; when the queue is full, spans are dropped, never requests. Given the
service's metrics, the pipeline counts both (:mod:`obslab.telemetry.pipeline`).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from flask import Flask
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    set_global_response_propagator,
)
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
from opentelemetry.sdk.environment_variables import (
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

from obslab import __version__, settings
from obslab import conventions as c
from obslab.telemetry.pipeline import CountingSpanExporter, DropCountingMeterProvider
from obslab.telemetry.redaction import RedactingSpanExporter

if TYPE_CHECKING:
    from obslab.telemetry.metrics import MetricSet

# Health checks and scrapes would drown the interesting spans.
EXCLUDED_URLS = "/health,/ready,/metrics,/internal/faults"

_lock = threading.Lock()
_exporters: list[SpanExporter] = []      # what this process's pipeline exports through


def tracing_enabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "false").strip().lower() != "true"


def _protocol() -> str:
    return (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )


def build_exporter(endpoint: str | None = None) -> SpanExporter | None:
    """The exporter named by ``OTEL_TRACES_EXPORTER`` (default otlp), or None for ``none``."""
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    if kind != "otlp":
        raise settings.ConfigError(
            f"OTEL_TRACES_EXPORTER={kind!r} is not supported here; use otlp, console or none"
        )
    env_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    protocol = _protocol()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=endpoint) if endpoint else GrpcExporter()
    if protocol not in ("http/protobuf", "http"):
        raise settings.ConfigError(
            f"OTLP protocol {protocol!r} is not supported; use http/protobuf or grpc"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    if endpoint is None and not env_endpoint:
        endpoint = settings.service_url(c.TRACE_SINK) + "/v1/traces"
    return HttpExporter(endpoint=endpoint) if endpoint else HttpExporter()


def _resource(service_name: str, service_version: str | None, environment: str | None) -> Resource:
    # Unset: OTEL_RESOURCE_ATTRIBUTES may say, else the default below.
    env_name = environment or settings.ENVIRONMENT.raw()
    attributes = {
        "service.name": service_name,
        "service.version": service_version or __version__,
        "service.namespace": "obslab",
    }
    if env_name:
        attributes["deployment.environment"] = env_name
        attributes["deployment.environment.name"] = env_name
    resource = Resource.create(attributes)
    if "deployment.environment" not in resource.attributes:  # not even in OTEL_RESOURCE_ATTRIBUTES
        resource = resource.merge(
            Resource({
                "deployment.environment": settings.ENVIRONMENT.default,
                "deployment.environment.name": settings.ENVIRONMENT.default,
            })
        )
    return resource


# Spans per export unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE says otherwise (the SDK's default is
# 512). The export thread holds the GIL while it redacts and encodes a batch, and the service's
# requests wait for it: batches of 64 are exported more often but each takes a few
# milliseconds. In paced transfers at half of saturation, four rounds interleaved on two labs,
# the p99 was lower in every round: median 61 against 78 ms (obslab/bench/README.md).
EXPORT_BATCH_SPANS = 64


def _batch_processor(chain: SpanExporter, **options: object) -> BatchSpanProcessor:
    if not os.environ.get(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "").strip():
        options["max_export_batch_size"] = EXPORT_BATCH_SPANS
    return BatchSpanProcessor(chain, **options)


def span_processor(
    exporter: SpanExporter, service_name: str, metrics: MetricSet | None = None,
) -> BatchSpanProcessor:
    """The batch processor of a service: spans are redacted, then exported off the request path.

    With ``metrics``, spans per export outcome count in ``telemetry_spans_exported_total`` and,
    unless ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED`` is explicitly false, spans dropped on a
    full queue in ``telemetry_spans_dropped_total`` (both series at 0 from the start).
    """
    chain: SpanExporter = RedactingSpanExporter(exporter)
    if metrics is None:
        return _batch_processor(chain)
    chain = CountingSpanExporter(chain, metrics, service_name)
    # The processor reports its drops only with the SDK's self-metrics switched on, and reads the
    # switch once, here. Its reports go to the meter provider given here; the SDK's other
    # self-metrics go to the global one, which the lab leaves a no-op.
    os.environ.setdefault(OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED, "true")
    if os.environ[OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED].strip().lower() != "true":
        return _batch_processor(chain)
    return _batch_processor(chain, meter_provider=DropCountingMeterProvider(metrics, service_name))


def configure_tracing(
    service_name: str,
    *,
    service_version: str | None = None,
    environment: str | None = None,
    endpoint: str | None = None,
    exporter: SpanExporter | None = None,
    metrics: MetricSet | None = None,
) -> trace.TracerProvider:
    """Install the process's tracer provider and the HTTP client instrumentations: urllib3 for
    calls between services (obslab.platform.http), requests for the rest (the ML services' queries).

    Idempotent: an SDK provider that is already installed (by an earlier call, or by a test that
    wants spans in memory) is kept, and libraries are instrumented once. Returns the provider.
    ``metrics`` (the service's own) get the pipeline's counters when this call builds the
    pipeline; a kept provider, exporter ``none`` or tracing off leave them out.
    """
    with _lock:
        provider = trace.get_tracer_provider()
        if not tracing_enabled():
            return provider
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http,database")
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider(resource=_resource(service_name, service_version, environment))
            span_exporter = exporter if exporter is not None else build_exporter(endpoint)
            if span_exporter is not None:
                provider.add_span_processor(span_processor(span_exporter, service_name, metrics))
                _exporters.append(span_exporter)
            trace.set_tracer_provider(provider)
        set_global_response_propagator(TraceResponsePropagator())
        # A call through requests gets one span: requests' instrumentation turns urllib3's off beneath it.
        if not RequestsInstrumentor().is_instrumented_by_opentelemetry:
            RequestsInstrumentor().instrument(tracer_provider=provider)
        if not URLLib3Instrumentor().is_instrumented_by_opentelemetry:
            URLLib3Instrumentor().instrument(tracer_provider=provider, request_hook=_name_the_peer)
        return provider


def _name_the_peer(span: trace.Span, pool: Any, _request: Any) -> None:
    """The peer's address on a call's client span, as the requests instrumentation set it and
    urllib3's does not: with it, a call to a peer that is down still names the peer."""
    if span.is_recording():
        span.set_attribute("server.address", pool.host)
        span.set_attribute("server.port", pool.port)


def instrument_flask_app(app: Flask) -> None:
    if tracing_enabled():
        FlaskInstrumentor().instrument_app(
            app, excluded_urls=EXCLUDED_URLS, tracer_provider=trace.get_tracer_provider()
        )


def shutdown_tracing(timeout_millis: int = 5_000) -> None:
    """Flush what is queued (bounded) and stop; called when a worker exits."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_millis)
        provider.shutdown()


def discard_tracing() -> None:
    """Stop without exporting what is queued: for a process that never served (a refused start),
    whose few spans are not worth waiting for a collector that may be absent (the exporter's
    retries kept such a process alive for six seconds)."""
    for exporter in _exporters:
        exporter.shutdown()      # a shut-down exporter drops batches at once
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def current_trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the active, sampled span in W3C hex, or None."""
    context = trace.get_current_span().get_span_context()
    if not (context.is_valid and context.trace_flags.sampled):
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)
