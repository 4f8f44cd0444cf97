import io
import json
import logging

from opentelemetry import trace

from obslab.telemetry.logs import json_handler


def _logger(stream):
    logger = logging.getLogger(f"test-{id(stream)}")
    logger.handlers[:] = [json_handler("demo", stream)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_a_log_line_inside_a_span_carries_that_span_s_ids():
    stream = io.StringIO()
    log = _logger(stream)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        log.info("moved money", extra={"amount_bucket": "lt_100"})
        context = span.get_span_context()
    line = json.loads(stream.getvalue())
    assert line["trace_id"] == trace.format_trace_id(context.trace_id)
    assert line["span_id"] == trace.format_span_id(context.span_id)
    assert line["message"] == "moved money"
    assert line["service"] == "demo"
    assert line["amount_bucket"] == "lt_100"
    assert line["level"] == "info"


def test_a_log_line_outside_any_span_has_empty_ids_and_is_still_json():
    stream = io.StringIO()
    _logger(stream).warning("no span here %s", "ok")
    line = json.loads(stream.getvalue())
    assert line["trace_id"] == "" and line["span_id"] == ""
    assert line["message"] == "no span here ok"


def test_exceptions_are_logged_inside_the_json_object():
    stream = io.StringIO()
    log = _logger(stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    line = json.loads(stream.getvalue())
    assert "RuntimeError: boom" in line["exception"]
