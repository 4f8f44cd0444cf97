"""The one telemetry bootstrap every component calls: traces, JSON logs, Prometheus metrics."""

from obslab.telemetry.logs import configure_logging
from obslab.telemetry.metrics import MetricSet, exemplar, exposition
from obslab.telemetry.redaction import mask_account, mask_customer, redact_text
from obslab.telemetry.tracing import (
    configure_tracing,
    current_trace_ids,
    instrument_flask_app,
    discard_tracing,
    shutdown_tracing,
    tracing_enabled,
)

__all__ = [
    "MetricSet",
    "configure_logging",
    "configure_tracing",
    "current_trace_ids",
    "exemplar",
    "exposition",
    "instrument_flask_app",
    "mask_account",
    "mask_customer",
    "redact_text",
    "discard_tracing",
    "shutdown_tracing",
    "tracing_enabled",
]
