"""The gateway's edge guard (services/gateway/guard.py): what a flood sends is refused in front of
Flask, answered and observed exactly as the framework would, and nothing else changes."""

from __future__ import annotations

import time

import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from obslab import conventions as c
from obslab import settings
from obslab.services.gateway.app import AUDIT_EXTENSION, audit_log
from tests.support import service_headers

ACCOUNTS = f"{c.API_PREFIX}/accounts"
LOGIN = f"{c.API_PREFIX}/auth/login"
TRANSFERS = f"{c.API_PREFIX}/transfers"
GUARD_SCOPE = "obslab.services.gateway.guard"


def requests_counted(base_url: str, service: str, route: str, code: str, method: str) -> float:
    text = requests.get(f"{base_url}/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "http_server_requests_total" and sample.labels == {
                   "service": service, "route": route, "code": code, "method": method})


def audit_rows(stack) -> list[dict]:
    stack.app(c.GATEWAY).extensions[AUDIT_EXTENSION].flush()   # records are written in batches
    db = stack.app(c.GATEWAY).extensions["obslab"].db
    return db.run(lambda conn: [dict(row._mapping) for row in conn.execute(select(audit_log).order_by(audit_log.c.id))])


def test_a_flood_without_tokens_is_refused_at_the_edge_and_still_traced_counted_and_logged(stack, spans, caplog):
    gateway = stack.url(c.GATEWAY)
    before = requests_counted(gateway, c.GATEWAY, ACCOUNTS, "401", "GET")
    caplog.set_level("INFO", logger="obslab.platform.app")
    for headers in ({}, {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.forged"}, {"Authorization": "Basic x"}):
        response = requests.get(f"{gateway}{ACCOUNTS}", headers=headers, timeout=5)
        assert response.status_code == 401 and response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] in ("unauthenticated", "invalid_token") and response.json()["message"]
        trace_id = response.headers["traceresponse"].split("-")[1]
        # The test's own request is a client span of the same trace: the guard continued it.
        [span] = [s for s in spans.get_finished_spans()
                  if f"{s.context.trace_id:032x}" == trace_id and s.kind.name == "SERVER"]
        # Answered by the guard, not by Flask's instrumentation: nothing behind it ran.
        assert span.instrumentation_scope.name == GUARD_SCOPE
        assert span.name == f"GET {ACCOUNTS}" and span.parent is not None
        assert span.attributes["http.route"] == ACCOUNTS and span.attributes["http.response.status_code"] == 401
        assert span.attributes["http.request.method"] == "GET" and span.attributes[c.ATTR_CLIENT_ADDRESS] == "127.0.0.1"
    assert requests_counted(gateway, c.GATEWAY, ACCOUNTS, "401", "GET") == before + 3
    lines = [r for r in caplog.records if r.getMessage() == "request" and getattr(r, "route", None) == ACCOUNTS]
    assert len(lines) >= 3 and all(r.status == 401 for r in lines[-3:])


def test_a_junk_login_flood_is_refused_at_the_edge_as_auth_would_refuse_it_without_a_hop_to_auth(stack):
    gateway, auth = stack.url(c.GATEWAY), stack.url(c.AUTH)
    junk = b'{"user": "admin", "pass": "123456", "remember": true}'
    auth_before = requests_counted(auth, c.AUTH, "/tokens", "400", "POST")
    at_edge = requests.post(f"{gateway}{LOGIN}", data=junk, headers={"Content-Type": "application/json"}, timeout=5)
    by_auth = requests.post(f"{auth}/tokens", data=junk, timeout=5,
                            headers={"Content-Type": "application/json", **service_headers(c.GATEWAY, c.AUTH)})
    assert at_edge.status_code == by_auth.status_code == 400
    assert at_edge.json() == by_auth.json() and at_edge.json()["error"] == "invalid_request"
    assert at_edge.headers["Cache-Control"] == "no-store"
    # Only the direct call reached auth.
    assert requests_counted(auth, c.AUTH, "/tokens", "400", "POST") == auth_before + 1
    for body in (b"", b'{"username": "admin", "password": ', b"[]"):
        assert requests.post(f"{gateway}{LOGIN}", data=body, timeout=5).status_code == 400
    assert requests_counted(auth, c.AUTH, "/tokens", "400", "POST") == auth_before + 1


def test_a_login_the_edge_lets_through_reaches_auth_with_its_whole_body(stack):
    gateway = stack.url(c.GATEWAY)
    wrong = requests.post(f"{gateway}{LOGIN}", json={"username": "nobody-here", "password": "x" * 900}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials"
    too_big = requests.post(f"{gateway}{LOGIN}", data=b'{"username": "a", "password": "' + b"x" * 2_000_000 + b'"}',
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert too_big.status_code == 413


def test_a_state_changing_call_refused_at_the_edge_is_audited_and_a_read_is_not(stack):
    gateway = stack.url(c.GATEWAY)
    known = {row["id"] for row in audit_rows(stack)}
    refused = requests.post(f"{gateway}{TRANSFERS}", json={}, headers={"Idempotency-Key": "k-edge-1"}, timeout=5)
    assert refused.status_code == 401
    requests.get(f"{gateway}{ACCOUNTS}", timeout=5)
    new = [row for row in audit_rows(stack) if row["id"] not in known]
    assert [(row["method"], row["route"], row["status"], row["customer_id"]) for row in new] == [
        ("POST", TRANSFERS, 401, None)]
    assert new[0]["idempotency_key_sha256"] and new[0]["trace_id"] == refused.headers["traceresponse"].split("-")[1]


def test_a_flood_with_a_doubled_slash_is_judged_and_refused_at_the_edge_like_any_other(stack, spans):
    gateway = stack.url(c.GATEWAY)
    response = requests.get(f"{gateway}/{ACCOUNTS}", timeout=5)     # "//api/v1/accounts": Flask routes it
    assert response.status_code == 401
    trace_id = response.headers["traceresponse"].split("-")[1]
    [span] = [s for s in spans.get_finished_spans()
              if f"{s.context.trace_id:032x}" == trace_id and s.kind.name == "SERVER"]
    assert span.instrumentation_scope.name == GUARD_SCOPE and span.attributes["http.route"] == ACCOUNTS


def test_a_chunked_junk_login_is_refused_at_the_edge_too(stack):
    gateway, auth = stack.url(c.GATEWAY), stack.url(c.AUTH)
    auth_before = requests_counted(auth, c.AUTH, "/tokens", "400", "POST")
    response = requests.post(f"{gateway}{LOGIN}", data=iter([b'{"user": ', b'"admin"}']), timeout=5,
                             headers={"Content-Type": "application/json"})    # no Content-Length: chunked
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert requests_counted(auth, c.AUTH, "/tokens", "400", "POST") == auth_before


def test_every_request_over_a_clients_rate_is_counted_as_rate_limited(stack, tmp_path, monkeypatch):
    monkeypatch.setenv(settings.RATE_LIMIT_RPS.name, "0.01")
    monkeypatch.setenv(settings.RATE_LIMIT_BURST.name, "1")
    gateway = stack.own_gateway(tmp_path)
    try:
        codes = [requests.get(f"{gateway.url}{path}", timeout=5).status_code
                 for path in (ACCOUNTS, ACCOUNTS, "/" + ACCOUNTS, "/" + ACCOUNTS)]
        assert codes == [401, 429, 429, 429]
        text = requests.get(f"{gateway.url}/metrics", timeout=5).text
        limited = [sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == "gateway_rate_limited_total"]
        assert limited == [3.0]
    finally:
        gateway.stop()


def test_a_flood_beyond_the_detail_budget_is_counted_in_full_and_summed_up_not_traced_one_by_one(
        stack, spans, caplog, tmp_path, monkeypatch):
    monkeypatch.setenv(settings.EDGE_DETAILED_REFUSALS.name, "0.01")   # one refusal in detail, then none
    caplog.set_level("INFO", logger="obslab.services.gateway.guard")
    gateway = stack.own_gateway(tmp_path)
    try:
        flags = []
        for i in range(30):
            if i == 29:
                time.sleep(1.05)   # the summary covers at least a second
            response = requests.get(f"{gateway.url}{ACCOUNTS}", timeout=5)
            assert response.status_code == 401
            version, trace_id, span_id, flag = response.headers["traceresponse"].split("-")
            assert int(trace_id, 16) and int(span_id, 16)
            flags.append(int(flag, 16) & 1)     # W3C: the sampled bit
        assert flags == [1] + [0] * 29
        assert len([s for s in spans.get_finished_spans() if s.instrumentation_scope.name == GUARD_SCOPE]) == 1
        assert requests_counted(gateway.url, c.GATEWAY, ACCOUNTS, "401", "GET") == 30
        [summary] = [r for r in caplog.records if r.getMessage().startswith("refusals not traced")]
        assert summary.refused == 29 and summary.by_status == {"401": 29} and summary.seconds >= 1
    finally:
        gateway.stop()
