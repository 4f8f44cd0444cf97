"""The native trace sink reads OTLP/HTTP bodies as the Collector would: identity, gzip (also
several members) and deflate are stored; compressed bodies are inflated as a stream under a cap
(``OBSLAB_TRACE_MAX_INFLATED_BYTES``, 413 above it), corrupt ones are a 400, unknown encodings a
415, all as JSON; and nothing refused is stored. (The 200 MiB gzip bomb itself:
tests/security/test_control_plane_receiver.py.)"""

from __future__ import annotations

import gzip
import os
import time
import zlib

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from obslab.lab.trace_sink import create_app, inflate
from obslab.settings import ConfigError
from tests.support import serve

MiB = 1024 * 1024
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def export(service: str, padding: int = 0) -> bytes:
    """One span of ``service`` (a fresh trace), ``padding`` bytes of attribute to make it big."""
    now = time.time_ns()
    span = Span(trace_id=os.urandom(16), span_id=os.urandom(8), name="GET /accounts", kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now - 5_000_000, end_time_unix_nano=now,
                attributes=[KeyValue(key="padding", value=AnyValue(string_value="x" * padding))] if padding else [])
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource={"attributes": [KeyValue(key="service.name", value=AnyValue(string_value=service))]},
        scope_spans=[ScopeSpans(scope={"name": "tests"}, spans=[span])],
    )])
    return request.SerializeToString()


@pytest.fixture
def sink(tmp_path):
    server = serve(create_app(str(tmp_path / "sink")))
    yield server
    server.stop()


def send(sink, body: bytes, encoding: str | None = None) -> requests.Response:
    headers = {**PROTOBUF, **({"Content-Encoding": encoding} if encoding else {})}
    return requests.post(f"{sink.url}/v1/traces", data=body, headers=headers, timeout=30)


def services(sink) -> list[str]:
    return requests.get(f"{sink.url}/api/services", timeout=5).json()["data"]


@pytest.mark.parametrize("encoding, encode", [
    (None, lambda b: b),
    ("identity", lambda b: b),
    ("gzip", gzip.compress),
    ("GZIP", gzip.compress),
    ("gzip", lambda b: gzip.compress(b[:10]) + gzip.compress(b[10:])),    # two members, as gzip(1) appends
    ("gzip", lambda b: gzip.compress(b) + bytes(16)),                      # zero padding after the member
    ("deflate", zlib.compress),
], ids=["none", "identity", "gzip", "gzip-upper", "gzip-two-members", "gzip-padded", "deflate"])
def test_every_encoding_an_exporter_uses_is_stored(sink, encoding, encode):
    response = send(sink, encode(export("accounts")), encoding)
    assert response.status_code == 200, response.text
    assert services(sink) == ["accounts"]


@pytest.mark.parametrize("body, encoding", [
    (gzip.compress(export("accounts"))[:-4], "gzip"),                     # truncated
    (b"\x1f\x8b\x08\x00" + b"\xff" * 40, "gzip"),                           # a header, then garbage
    (gzip.compress(export("accounts")) + b"trailing", "gzip"),
    (b"", "gzip"),
    (zlib.compress(export("accounts")) + b"x", "deflate"),
    (gzip.compress(export("accounts")), "deflate"),                      # gzip sent as deflate
], ids=["truncated", "garbage", "trailing-data", "empty", "deflate-trailing", "wrong-format"])
def test_a_corrupt_compressed_body_is_a_400_with_json_and_stores_nothing(sink, body, encoding):
    response = send(sink, body, encoding)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_otlp_request" and encoding in response.json()["message"]
    assert services(sink) == []


def test_an_unknown_content_encoding_is_a_415(sink):
    response = send(sink, export("accounts"), "br")
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_content_encoding"
    assert services(sink) == []


def test_the_inflated_size_cap_is_a_setting_and_is_exact(tmp_path, monkeypatch):
    monkeypatch.setenv("OBSLAB_TRACE_MAX_INFLATED_BYTES", str(2 * MiB))
    server = serve(create_app(str(tmp_path / "sink")))
    try:
        under = export("payments", padding=2 * MiB - 4096)
        assert len(under) <= 2 * MiB
        assert send(server, gzip.compress(under), "gzip").status_code == 200
        over = export("fraud", padding=2 * MiB + 1)
        response = send(server, gzip.compress(over), "gzip")
        assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
        assert send(server, zlib.compress(over), "deflate").status_code == 413
        # Uncompressed, the same body is only held to the 32 MiB wire limit.
        assert send(server, over).status_code == 200
        assert sorted(services(server)) == ["fraud", "payments"]
    finally:
        server.stop()


def test_the_cap_setting_must_be_at_least_a_mib(tmp_path, monkeypatch):
    monkeypatch.setenv("OBSLAB_TRACE_MAX_INFLATED_BYTES", "1000")
    with pytest.raises(ConfigError, match="OBSLAB_TRACE_MAX_INFLATED_BYTES"):
        create_app(str(tmp_path / "sink"))


def test_inflate_never_produces_more_than_the_cap_plus_one_byte(monkeypatch):
    from obslab.lab import trace_sink

    produced = 0

    class CountingInflater:
        def __init__(self, wbits: int) -> None:
            self._inner = zlib.decompressobj(wbits)

        def decompress(self, data, max_length: int = 0) -> bytes:
            nonlocal produced
            out = self._inner.decompress(data, max_length)
            produced += len(out)
            return out

        def __getattr__(self, name: str):
            return getattr(self._inner, name)

    class ZlibShim:
        MAX_WBITS = zlib.MAX_WBITS
        error = zlib.error
        decompressobj = CountingInflater

    monkeypatch.setattr(trace_sink, "zlib", ZlibShim)
    bomb = gzip.compress(bytes(10 * MiB))
    for cap in (MiB, MiB + 1, 3 * MiB + 7):
        produced = 0
        with pytest.raises(trace_sink.BodyError) as refused:
            inflate(bomb, "gzip", cap)
        assert refused.value.status == 413
        assert produced == cap + 1
    assert inflate(bomb, "gzip", 10 * MiB) == bytes(10 * MiB)
    assert len(inflate(gzip.compress(bytes(MiB)), "gzip", MiB)) == MiB


def test_a_chunked_body_over_the_wire_limit_is_refused_not_cut(sink):
    from obslab.lab.trace_sink import MAX_BODY_BYTES

    body = export("accounts")
    chunks = [body] + [bytes(MiB)] * (MAX_BODY_BYTES // MiB + 1)
    response = requests.post(f"{sink.url}/v1/traces", data=iter(chunks), headers=PROTOBUF, timeout=60)
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"
    assert services(sink) == []


@pytest.mark.parametrize("steps", [(1, 1), (7, 5), (1024, 3)], ids=lambda s: f"out{s[0]}-in{s[1]}")
def test_inflating_in_tiny_steps_agrees_with_gzip_and_zlib(monkeypatch, steps):
    """Step boundaries anywhere (mid-header, mid-match, mid-trailer, between members) change
    nothing: the result, or the refusal of a cut stream, is what gzip/zlib say."""
    from obslab.lab import trace_sink

    monkeypatch.setattr(trace_sink, "_INFLATE_STEP", steps[0])
    monkeypatch.setattr(trace_sink, "_INPUT_STEP", steps[1])
    data = b"".join([os.urandom(200), b"a" * 3000, b"abcxyz" * 400, os.urandom(50), b"\x00" * 2000])
    bodies = [("gzip", gzip.compress(data)), ("gzip", gzip.compress(data[:999]) + gzip.compress(data[999:]) + bytes(3)),
              ("deflate", zlib.compress(data))]
    for encoding, body in bodies:
        for cut in (0, 1, 4, 9, len(body) // 2):
            cut_body = body[:len(body) - cut]
            try:
                expected = gzip.decompress(cut_body) if encoding == "gzip" else zlib.decompress(cut_body)
            except (OSError, EOFError, zlib.error):
                expected = None
            try:
                got = bytes(inflate(cut_body, encoding, 1 << 30))
            except trace_sink.BodyError as exc:
                assert exc.status == 400
                got = None
            assert got == expected, (encoding, cut)


@pytest.mark.parametrize("query", [
    "end=99999999999999999999999", "start=-999999999999999999", "lookback=" + "9" * 400 + "h",
    "minDuration=" + "9" * 400 + "s", "limit=²", "limit=" + "9" * 50, "end=1e30", "lookback=inf" + "s",
])
def test_a_huge_or_odd_time_parameter_is_a_400_not_a_500(sink, query):
    response = requests.get(f"{sink.url}/api/traces?service=gateway&{query}", timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["msg"]


def test_a_resent_batch_is_accepted_and_stored_once_with_its_events_and_attributes(sink):
    """An exporter re-sends a batch whose answer it lost: the sink says yes again and keeps one copy."""
    now = time.time_ns()
    trace_id = os.urandom(16)
    with_event = Span(trace_id=trace_id, span_id=os.urandom(8), name="POST /transfers", kind=Span.SPAN_KIND_SERVER,
                      start_time_unix_nano=now - 5_000_000, end_time_unix_nano=now,
                      attributes=[KeyValue(key="http.response.status_code", value=AnyValue(int_value=201))],
                      events=[Span.Event(name="exception", time_unix_nano=now - 1_000_000, attributes=[
                          KeyValue(key="exception.type", value=AnyValue(string_value="TimeoutError"))])])
    plain = Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=with_event.span_id, name="INSERT transfers",
                 kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=now - 4_000_000, end_time_unix_nano=now - 3_000_000)
    body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource={"attributes": [KeyValue(key="service.name", value=AnyValue(string_value="transactions"))]},
        scope_spans=[ScopeSpans(scope={"name": "tests"}, spans=[with_event, plain])],
    )]).SerializeToString()
    assert send(sink, body).status_code == 200
    assert send(sink, body).status_code == 200, "a re-sent batch is not an error"
    [stored] = requests.get(f"{sink.url}/api/traces/{trace_id.hex()}", timeout=5).json()["data"]
    by_name = {span["operationName"]: span for span in stored["spans"]}
    assert sorted(by_name) == ["INSERT transfers", "POST /transfers"], "each span once"
    assert {"key": "http.response.status_code", "type": "int64", "value": 201} in by_name["POST /transfers"]["tags"]
    [log] = by_name["POST /transfers"]["logs"]
    assert {"key": "exception.type", "type": "string", "value": "TimeoutError"} in log["fields"]
    assert by_name["INSERT transfers"]["logs"] == []


def test_a_span_time_past_what_the_store_can_hold_is_a_400_and_stores_nothing(sink):
    request = ExportTraceServiceRequest()
    request.ParseFromString(export("accounts"))
    request.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = 2**63      # fits OTLP's fixed64
    response = send(sink, request.SerializeToString())
    assert response.status_code == 400 and "past the year 2262" in response.json()["message"], response.text
    assert services(sink) == []
