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


CUSTOMER = "cus_k3v9x0q2m7d1p8zt"


def test_customer_ids_are_masked_in_the_message_every_extra_value_and_the_exception():
    stream = io.StringIO()
    log = _logger(stream)
    try:
        raise LookupError(f"no accounts for {CUSTOMER}")
    except LookupError:
        log.exception("lookup failed for owner=%s", CUSTOMER,
                      extra={"owner": CUSTOMER, "owners": [CUSTOMER, "cus_test"],
                             "request": {"query": {"owner": CUSTOMER}, "ids": (CUSTOMER,)}})
    output = stream.getvalue()
    assert CUSTOMER not in output
    line = json.loads(output)
    assert line["message"] == "lookup failed for owner=cus_****p8zt"
    assert line["owner"] == "cus_****p8zt"
    assert line["owners"] == ["cus_****p8zt", "cus_test"]
    assert line["request"] == {"query": {"owner": "cus_****p8zt"}, "ids": ["cus_****p8zt"]}
    assert "LookupError: no accounts for cus_****p8zt" in line["exception"]


def test_values_under_secret_looking_keys_are_replaced_whole_wherever_they_are():
    stream = io.StringIO()
    _logger(stream).info("login", extra={"password": "hunter2", "body": {"username": "a", "new_password": "x"},
                                         "token_count": 3, "api_token": ""})
    line = json.loads(stream.getvalue())
    assert line["password"] == "[REDACTED]"
    assert line["body"] == {"username": "a", "new_password": "[REDACTED]"}
    assert line["token_count"] == 3 and line["api_token"] == ""


def test_objects_json_cannot_show_are_redacted_by_their_text():
    class Owner:
        def __str__(self) -> str:
            return f"Owner({CUSTOMER})"

    stream = io.StringIO()
    _logger(stream).warning("odd values", extra={"owner": Owner(), "raw": CUSTOMER.encode(),
                                                 "by_owner": {CUSTOMER: 1, 7: "seven"}})
    line = json.loads(stream.getvalue())
    assert line["owner"] == "Owner(cus_****p8zt)"
    assert line["raw"] == "b'cus_****p8zt'"
    assert line["by_owner"] == {"cus_****p8zt": 1, "7": "seven"}


def test_a_clean_record_is_unchanged_and_trace_ids_are_never_taken_for_card_numbers():
    # A trace id with a long digit run: redacting it would break the link from log to trace.
    context = trace.SpanContext(0x12345678901234567890123456789012, 0x1234567890123456, is_remote=False,
                                trace_flags=trace.TraceFlags(1))
    stream = io.StringIO()
    with trace.use_span(trace.NonRecordingSpan(context)):
        _logger(stream).info("moved %d minor units", 1250, extra={"amount_bucket": "lt_100", "attempt": 2})
    line = json.loads(stream.getvalue())
    assert line["trace_id"] == "12345678901234567890123456789012" and line["span_id"] == "1234567890123456"
    assert line["message"] == "moved 1250 minor units"
    assert line["amount_bucket"] == "lt_100" and line["attempt"] == 2
