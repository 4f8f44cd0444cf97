"""One JSON object per line, with the trace and span of the code that logged it.

The stock ``OTEL_PYTHON_LOG_CORRELATION`` switch patches ``logging.setLogRecordFactory`` and has
known problems (it is skipped when another library installed a factory first, and formats that
do not name the fields drop them). Reading the current span in a filter on our own handler works
for every logger, in the thread that logs, and is tested end to end.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import datetime, timezone
from typing import Any, TextIO

from opentelemetry import trace

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is emitted.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "trace_id", "span_id", "trace_flags", "taskName"}

_configured_lock = threading.Lock()
_configured = False


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` / ``span_id`` (W3C hex) of the active span, or empty strings."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        else:
            record.trace_id = ""
            record.span_id = ""
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", ""),
            "span_id": getattr(record, "span_id", ""),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str, separators=(",", ":"))


def json_handler(service: str, stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(TraceContextFilter())
    return handler


def configure_logging(service: str, level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Route every logger of the process through one JSON handler (once per process)."""
    global _configured
    with _configured_lock:
        if _configured:
            return
        root = logging.getLogger()
        root.handlers[:] = [json_handler(service, stream)]
        root.setLevel(level)
        # The exporter's retry warnings would flood the log while the collector is down; one
        # line per failed batch is enough and is what an operator greps for.
        logging.getLogger("opentelemetry.exporter").setLevel(logging.ERROR)
        _configured = True
