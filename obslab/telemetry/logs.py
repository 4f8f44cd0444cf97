"""One JSON object per line, with the trace and span of the code that logged it.

The stock ``OTEL_PYTHON_LOG_CORRELATION`` switch patches ``logging.setLogRecordFactory`` and has
known problems (it is skipped when another library installed a factory first, and formats that
do not name the fields drop them). Reading the current span in a filter on our own handler works
for every logger, in the thread that logs, and is tested end to end.

Every record passes through the redaction the spans get (:func:`redact_text`): the message, each
``extra=`` value (strings, and strings inside lists, tuples and dicts; a value under a key such
as ``password`` whatever it looks like) and the exception text. A log line is as likely as a span
to carry what a developer did not mean to write down (a SQL error with its parameters, a customer
id in a warning, a bearer token), and the log shipper is no place to fix it. One regex search per
string decides that nothing needs redaction, which is the common case.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import datetime, timezone
from typing import Any, TextIO

from opentelemetry import trace

from obslab.telemetry.redaction import REDACTED, is_secret_key, redact_text

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


_JSON_SCALARS = (int, float, bool, type(None))
# Nesting deeper than this is emitted as (redacted) text rather than walked.
_MAX_DEPTH = 8


def redact_value(value: Any, depth: int = 0) -> Any:
    """``value`` as the JSON line will show it, with every string in it redacted.

    Lists, tuples and dicts are walked (keys are redacted too, and a string under a
    secret-looking key such as ``password`` is replaced whole); anything else JSON cannot
    represent becomes its ``str()`` first, as ``json.dumps(..., default=str)`` would have made
    it, so that this text is redacted too.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, _JSON_SCALARS):
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, (list, tuple)):
            return [redact_value(item, depth + 1) for item in value]
        if isinstance(value, dict):
            return {_redact_key(key): _redact_field(str(key), item, depth + 1) for key, item in value.items()}
    return redact_text(str(value))


def _redact_key(key: Any) -> Any:
    return key if isinstance(key, _JSON_SCALARS) else redact_text(str(key))


def _redact_field(key: str, value: Any, depth: int = 0) -> Any:
    if isinstance(value, (str, bytes)) and value and is_secret_key(key):
        return REDACTED
    return redact_value(value, depth)


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
            "message": redact_text(record.getMessage()),
            "trace_id": getattr(record, "trace_id", ""),
            "span_id": getattr(record, "span_id", ""),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                event[key] = _redact_field(key, value)
        if record.exc_info:
            event["exception"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            event["exception"] = redact_text(record.exc_text)
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
