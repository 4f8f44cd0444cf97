"""The native trace sink: a small OTLP/HTTP receiver with a Jaeger-shaped query API.

STAND-IN. Where Docker runs, the Collector and Jaeger do this job. Without them, services still
need somewhere to send spans, and tests need to prove propagation over the real OTLP wire.

  POST /v1/traces                 OTLP/HTTP protobuf (gzip or not) -> stored under the data dir
  POST /v1/metrics                OTLP/HTTP protobuf, accepted and counted, not stored
  GET  /api/services              Jaeger query API subset, in Jaeger's JSON shape
  GET  /api/services/<s>/operations
  GET  /api/traces?service=S&limit=N[&operation=O&lookback=1h&start=&end=&minDuration=]
  GET  /api/traces/<trace_id>     404 when unknown

A body is at most 32 MiB as sent; a gzip or deflate body is inflated as a stream and refused with
a 413 as soon as it passes ``$OBSLAB_TRACE_MAX_INFLATED_BYTES`` (64 MiB): a 200 KiB gzip bomb
(200 MiB of zeros) costs at most the cap, never its full size. A corrupt stream is a 400.
"""

from __future__ import annotations

import re
import time
import zlib
from typing import Any

from flask import Flask, Response, jsonify, request
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from werkzeug.exceptions import RequestEntityTooLarge

from obslab import conventions as c
from obslab import settings
from obslab.lab.trace_store import STATUS_ERROR, STATUS_OK, SpanRejected, StoredSpan, TraceStore, decode, metadata
from obslab.platform.app import ServiceContext, create_service_app

PROTOBUF = "application/x-protobuf"
MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_INFLATED_BYTES = settings.TRACE_MAX_INFLATED_BYTES.default
# A compressed body is inflated in steps of at most this much output from this much input, so
# neither the output (see inflate) nor a copy of the input ever grows past the cap.
_INFLATE_STEP = 1024 * 1024
_INPUT_STEP = 64 * 1024
# zlib window bits: gzip (RFC 1952) and HTTP's "deflate", which is the zlib format (RFC 1950).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(us|µs|ms|s|m|h|d)$")
_EPOCH_US = re.compile(r"[0-9]{1,17}")
_MAX_SPAN_NS = 10 * 365 * 86400e9
_DURATION_UNITS_NS = {"us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9, "d": 86400e9}


def create_app(data_dir: str | None = None) -> Flask:
    directory = settings.data_dir(data_dir) / "traces"
    return create_service_app(
        c.TRACE_SINK, _routes, metadata=metadata, db_url=f"sqlite:///{directory / 'spans.sqlite3'}",
        metric_specs=[c.TRACE_SINK_SPANS, c.TRACE_SINK_EXPORTS], traced=False, max_body_bytes=MAX_BODY_BYTES,
    )


# --- Jaeger JSON ----------------------------------------------------------------------------


def _tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    return {"key": key, "type": "string", "value": str(value)}


def _span_tags(span: StoredSpan) -> list[dict[str, Any]]:
    tags = [_tag(k, v) for k, v in span.attributes.items()]
    if span.kind in _KINDS:
        tags.append(_tag("span.kind", _KINDS[span.kind]))
    if span.scope:
        tags.append(_tag("otel.scope.name", span.scope))
    if span.status_code == STATUS_ERROR:
        tags.append(_tag("otel.status_code", "ERROR"))
        tags.append(_tag("error", True))
        if span.status_message:
            tags.append(_tag("otel.status_description", span.status_message))
    elif span.status_code == STATUS_OK:
        tags.append(_tag("otel.status_code", "OK"))
    return tags


def jaeger_trace(trace_id: str, spans: list[StoredSpan]) -> dict[str, Any]:
    processes: dict[str, dict[str, Any]] = {}
    process_of: dict[str, str] = {}
    for span in spans:
        if span.service not in process_of:
            process_id = f"p{len(process_of) + 1}"
            process_of[span.service] = process_id
            processes[process_id] = {
                "serviceName": span.service,
                "tags": [_tag(k, v) for k, v in span.resource.items() if k != "service.name"],
            }
    return {
        "traceID": trace_id,
        "spans": [{
            "traceID": span.trace_id,
            "spanID": span.span_id,
            "operationName": span.name,
            "references": [{"refType": "CHILD_OF", "traceID": span.trace_id, "spanID": span.parent_span_id}]
            if span.parent_span_id else [],
            "startTime": span.start_ns // 1000,
            "duration": max(0, span.end_ns - span.start_ns) // 1000,
            "tags": _span_tags(span),
            "logs": [{"timestamp": e["time_ns"] // 1000,
                      "fields": [_tag("event", e["name"])] + [_tag(k, v) for k, v in e["attributes"].items()]}
                     for e in span.events],
            "processID": process_of[span.service],
            "warnings": None,
            "flags": 1,
        } for span in spans],
        "processes": processes,
        "warnings": None,
    }


def _envelope(data: Any, status: int = 200, error: str | None = None) -> tuple[Response, int]:
    body = {"data": data, "total": len(data) if isinstance(data, list) else 0, "limit": 0, "offset": 0,
            "errors": [{"code": status, "msg": error}] if error else None}
    return jsonify(body), status


def _duration_ns(raw: str, name: str) -> int:
    match = _DURATION.match(raw.strip())
    nanoseconds = float(match.group(1)) * _DURATION_UNITS_NS[match.group(2)] if match else None
    if nanoseconds is None or not nanoseconds <= _MAX_SPAN_NS:
        raise ValueError(f"{name} must look like 500ms, 2s, 1h or 2d (at most 10 years), got {raw[:40]!r}")
    return int(nanoseconds)


def _epoch_us(raw: str, name: str) -> int:
    """A Jaeger time parameter (microseconds since the epoch) as nanoseconds."""
    if not _EPOCH_US.fullmatch(raw):
        raise ValueError(f"{name} must be microseconds since the epoch, got {raw[:40]!r}")
    return int(raw) * 1000


# --- routes -----------------------------------------------------------------------------------


class BodyError(Exception):
    """A body that cannot be read: ``status`` 413 (too large inflated), 400 (corrupt), 415."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def inflate(data: bytes, encoding: str, cap: int) -> bytearray:
    """``data`` decompressed (gzip, its concatenated members, or zlib-format deflate), refusing as
    soon as the output would pass ``cap`` bytes: never more than ``cap`` + 1 bytes are produced,
    and the input is fed a step at a time (no copy of the compressed body either)."""
    wbits = _WBITS[encoding]
    view = memoryview(data)
    pieces = (view[start:start + _INPUT_STEP] for start in range(0, len(view), _INPUT_STEP))
    out = bytearray()
    inflater = zlib.decompressobj(wbits)
    pending: bytes | memoryview = b""   # input the inflater has not taken yet
    more_output = False                 # the last step stopped at its output limit
    try:
        while True:
            if inflater.eof:
                if encoding == "deflate":
                    if pending or next(pieces, None) is not None:
                        raise BodyError(400, "invalid_otlp_request", "data after the end of the deflate stream")
                    return out
                # After a gzip member: another member, or zero padding (gzip(1) accepts both).
                pending = bytes(pending).lstrip(b"\0")
                if not pending:
                    piece = next(pieces, None)
                    if piece is None:
                        return out
                    pending = piece
                    continue
                inflater = zlib.decompressobj(wbits)
            if not pending and not more_output:
                piece = next(pieces, None)
                if piece is None:
                    raise BodyError(400, "invalid_otlp_request", f"the {encoding} body is truncated")
                pending = piece
            step = min(_INFLATE_STEP, cap - len(out) + 1)
            produced = inflater.decompress(pending, step)
            out += produced
            if len(out) > cap:
                raise BodyError(413, "payload_too_large",
                                f"the {encoding} body inflates to more than {cap} bytes "
                                f"({settings.TRACE_MAX_INFLATED_BYTES.name}); send smaller batches")
            more_output = len(produced) == step
            pending = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    except zlib.error as exc:
        raise BodyError(400, "invalid_otlp_request", f"the {encoding} body is corrupt: {exc}") from None


def _body(cap: int) -> bytes | bytearray:
    too_large = BodyError(413, "payload_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes; "
                          "send smaller batches")
    try:
        data = request.get_data()
    except RequestEntityTooLarge:   # chunked bodies too: waitress sets their length once read
        raise too_large from None
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding not in _WBITS:
        raise BodyError(415, "unsupported_content_encoding",
                        f"Content-Encoding {encoding!r} is not supported: send gzip, deflate or none")
    return inflate(data, encoding, cap)


def _routes(app: Flask, ctx: ServiceContext) -> None:
    assert ctx.db is not None
    max_inflated = settings.TRACE_MAX_INFLATED_BYTES.get()
    store = TraceStore(
        ctx.db,
        retention_seconds=settings.TRACE_RETENTION_HOURS.get() * 3600,
        max_spans=settings.TRACE_MAX_SPANS.get(),
    )
    app.extensions["trace_store"] = store

    def otlp_error(kind: str, message: str, status: int = 400,
                   code: str = "invalid_otlp_request") -> tuple[Response, int]:
        ctx.metrics.count(c.TRACE_SINK_EXPORTS, kind=kind, outcome="rejected")
        return jsonify({"error": code, "message": message}), status

    def parse(kind: str, message_type: type) -> Any:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != PROTOBUF:
            given = content_type or "no content type"
            return None, otlp_error(kind, f"send {PROTOBUF}; this stand-in does not take {given}", 415)
        message = message_type()
        try:
            body = _body(max_inflated)
        except BodyError as exc:
            return None, otlp_error(kind, exc.message, exc.status, exc.code)
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            return None, otlp_error(kind, f"body is not a valid {message_type.__name__}: {exc}")
        finally:
            del body
        return message, None

    @app.post("/v1/traces")
    def receive_traces():
        message, error = parse("traces", ExportTraceServiceRequest)
        if error:
            return error
        try:
            rows = decode(message)
        except SpanRejected as exc:
            return otlp_error("traces", str(exc))
        store.add(rows)
        per_service: dict[str, int] = {}
        for row in rows:
            per_service[row["service"]] = per_service.get(row["service"], 0) + 1
        for service, count in per_service.items():
            ctx.metrics.count(c.TRACE_SINK_SPANS, count, service=service)
        ctx.metrics.count(c.TRACE_SINK_EXPORTS, kind="traces", outcome="accepted")
        return Response(ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF)

    @app.post("/v1/metrics")
    def receive_metrics():
        _message, error = parse("metrics", ExportMetricsServiceRequest)
        if error:
            return error
        ctx.metrics.count(c.TRACE_SINK_EXPORTS, kind="metrics", outcome="accepted")
        return Response(ExportMetricsServiceResponse().SerializeToString(), content_type=PROTOBUF)

    @app.get("/api/services")
    def services():
        return _envelope(store.services())

    @app.get("/api/services/<service>/operations")
    def operations(service: str):
        return _envelope(store.operations(service))

    @app.get("/api/traces")
    def find_traces():
        service = request.args.get("service", "")
        if not service:
            return _envelope(None, 400, "parameter 'service' is required")
        try:
            raw_limit = request.args.get("limit", "20")
            limit = int(raw_limit) if raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) < 6 else 0
            if not 1 <= limit <= 1500:
                raise ValueError("limit must be between 1 and 1500")
            now_ns = time.time_ns()
            end_ns = _epoch_us(request.args["end"], "end") if "end" in request.args else now_ns
            if "start" in request.args:
                start_ns = _epoch_us(request.args["start"], "start")
            else:
                start_ns = end_ns - _duration_ns(request.args.get("lookback", "1h"), "lookback")
            min_duration = request.args.get("minDuration")
            min_duration_ns = _duration_ns(min_duration, "minDuration") if min_duration else 0
        except ValueError as exc:
            return _envelope(None, 400, str(exc))
        trace_ids = store.find_trace_ids(
            service, limit=limit, start_ns=start_ns, end_ns=end_ns,
            operation=request.args.get("operation") or None, min_duration_ns=min_duration_ns,
        )
        return _envelope([jaeger_trace(tid, store.trace(tid)) for tid in trace_ids])

    @app.get("/api/traces/<trace_id>")
    def get_trace(trace_id: str):
        if not re.fullmatch(r"[0-9a-fA-F]{1,32}", trace_id):
            return _envelope(None, 400, "trace id must be 1-32 hexadecimal characters")
        spans = store.trace(trace_id)
        if not spans:
            return _envelope(None, 404, "trace not found")
        return _envelope([jaeger_trace(spans[0].trace_id, spans)])
