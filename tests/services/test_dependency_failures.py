"""When a dependency is down, callers get a clear 503/504, money never moves twice, and a retry
with the same Idempotency-Key resumes the same transfer once the dependency is back."""

import uuid
from types import SimpleNamespace

import pytest
import requests
from opentelemetry.trace import SpanKind, StatusCode

from obslab import conventions as c
from obslab.services.accounts.app import create_app as accounts_app
from obslab.services.fraud.app import create_app as fraud_app
from obslab.services.notifications.app import create_app as notifications_app
from obslab.services.transactions.app import create_app as transactions_app
from tests.support import customer_headers, deposit, free_port, serve


@pytest.fixture
def parts(tmp_path):
    """fraud, accounts, notifications running; transactions wired to them; each can be stopped."""
    servers = {}
    ports = {name: free_port() for name in (c.FRAUD, c.ACCOUNTS, c.NOTIFICATIONS)}
    factories = {c.FRAUD: fraud_app, c.ACCOUNTS: accounts_app, c.NOTIFICATIONS: notifications_app}
    apps = {name: factories[name](f"sqlite:///{tmp_path / name}.db") for name in factories}

    def start(name):
        servers[name] = serve(apps[name], port=ports[name])

    def stop(name):
        servers.pop(name).stop()

    for name in factories:
        start(name)
    transactions = serve(transactions_app(
        f"sqlite:///{tmp_path / 'transactions'}.db",
        peer_urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
    ))
    accounts = f"http://127.0.0.1:{ports[c.ACCOUNTS]}"
    owner = "cus_0123456789abcdef"
    as_owner = customer_headers(owner, c.GATEWAY, c.ACCOUNTS)
    opened = [requests.post(f"{accounts}/accounts", json={"currency": "EUR"}, headers=as_owner).json()["id"]
              for _ in range(2)]
    deposit(accounts, opened[0], 10_000)

    def transfer(key, amount="10.00"):
        return requests.post(f"{transactions.url}/transfers", headers={
            **customer_headers(owner, c.GATEWAY, c.TRANSACTIONS), c.HEADER_IDEMPOTENCY_KEY: key,
        }, json={"from_account": opened[0], "to_account": opened[1], "amount": amount, "currency": "EUR"})

    def balances():
        return {a["id"]: a["balance"] for a in requests.get(f"{accounts}/accounts", headers=as_owner).json()}

    yield SimpleNamespace(start=start, stop=stop, app=transactions.app, source=opened[0], target=opened[1],
                          transfer=transfer, balances=balances)
    transactions.stop()
    for server in servers.values():
        server.stop()


def metric(app, name, labels):
    return app.extensions["obslab"].metrics.registry.get_sample_value(name, labels)


def test_accounts_down_is_a_503_naming_it_and_a_retry_resumes_the_same_transfer(parts):
    parts.stop(c.ACCOUNTS)
    failed = parts.transfer("salary")
    assert failed.status_code == 503
    assert failed.json()["error"] == "dependency_unavailable" and failed.json()["dependency"] == "accounts"
    assert metric(parts.app, "transaction_requests_total", {"type": "transfer", "status": "failed"}) == 1
    parts.start(c.ACCOUNTS)
    assert parts.balances()[parts.source] == "100.00"
    retried = parts.transfer("salary")
    assert retried.status_code == 201, retried.text
    again = parts.transfer("salary")
    assert again.json()["id"] == retried.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert parts.balances() == {parts.source: "90.00", parts.target: "10.00"}


def test_notifications_down_does_not_fail_the_transfer(parts):
    parts.stop(c.NOTIFICATIONS)
    response = parts.transfer(uuid.uuid4().hex)
    assert response.status_code == 201 and response.json()["status"] == "completed"
    assert metric(parts.app, "notifications_dropped_total", {"kind": "transfer_sent"}) == 1


def test_fraud_down_moves_no_money_and_opens_the_circuit_breaker(parts):
    parts.stop(c.FRAUD)
    codes = [parts.transfer(uuid.uuid4().hex).json()["error"] for _ in range(7)]
    assert codes[:5] == ["dependency_unavailable"] * 5
    assert codes[5:] == ["dependency_unavailable"] * 2  # now failing fast
    fast = parts.transfer(uuid.uuid4().hex).json()
    assert "circuit breaker open" in fast["message"]
    assert metric(parts.app, "circuit_breaker_open", {"service": "transactions", "peer": "fraud"}) == 1
    assert metric(parts.app, "http_client_request_duration_seconds_count",
                  {"service": "transactions", "peer": "fraud", "outcome": "circuit_open"}) >= 1
    assert parts.balances()[parts.source] == "100.00"


def test_a_slow_dependency_is_a_504_timeout_not_unreachable():
    import time

    from flask import Flask

    from obslab.platform.errors import ApiError
    from obslab.platform.http import ServiceClient
    from obslab.telemetry import MetricSet

    slow = Flask("slow")

    @slow.get("/slow")
    def _slow():
        time.sleep(1.0)
        return {}

    server = serve(slow)
    metrics = MetricSet(process_metrics=False)
    client = ServiceClient("caller", "slowpoke", metrics, base_url=server.url, timeout=0.2)
    try:
        with pytest.raises(ApiError) as info:
            client.request("GET", "/slow")
    finally:
        server.stop()
    assert (info.value.status, info.value.code) == (504, "dependency_timeout")
    assert metrics.registry.get_sample_value(
        "http_client_request_duration_seconds_count",
        {"service": "caller", "peer": "slowpoke", "outcome": "timeout"}) == 1


@pytest.fixture
def odd_peer():
    """A peer whose answers a service should never get: a redirect, a body that is not JSON; and
    an echo of what the client sent."""
    from flask import Flask, redirect, request

    odd = Flask("odd")

    @odd.get("/prefix/moved")
    def _moved():
        return redirect("http://127.0.0.1:1/elsewhere", code=302)

    @odd.get("/prefix/text")
    def _text():
        return "surely not JSON", 200, {"Content-Type": "text/plain"}

    @odd.post("/prefix/echo")
    def _echo():
        return {"path": request.full_path, "content_type": request.content_type, "body": request.get_json()}

    server = serve(odd)
    yield server
    server.stop()


def _client(url: str):
    from obslab.platform.http import ServiceClient
    from obslab.telemetry import MetricSet

    return ServiceClient("caller", "odd", MetricSet(process_metrics=False), base_url=f"{url}/prefix")


def test_a_peer_that_redirects_or_answers_other_than_json_is_a_502_naming_it(odd_peer):
    from obslab.platform.errors import ApiError

    client = _client(odd_peer.url)
    for path, says in (("/moved", "answered HTTP 302, a redirect"), ("/text", "not JSON")):
        with pytest.raises(ApiError) as info:
            client.call("GET", path)
        assert (info.value.status, info.value.code) == (502, "dependency_error")
        assert says in info.value.message and info.value.body()["dependency"] == "odd"


def test_a_call_keeps_the_peers_path_prefix_encodes_its_query_and_sends_json(odd_peer):
    answer = _client(odd_peer.url).call("POST", "/echo", params={"account": "acc 1", "limit": 5, "skip": None},
                                        json={"amount_minor": 150})
    assert answer == {"path": "/prefix/echo?account=acc+1&limit=5", "content_type": "application/json",
                      "body": {"amount_minor": 150}}


def test_a_calls_client_span_names_the_peers_address_even_when_it_is_down(spans):
    from obslab.platform.errors import ApiError
    from obslab.platform.http import ServiceClient
    from obslab.telemetry import MetricSet, configure_tracing

    configure_tracing("caller")
    port = free_port()
    client = ServiceClient("caller", "gone", MetricSet(process_metrics=False), base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ApiError):
        client.call("GET", "/accounts")
    [span] = [s for s in spans.get_finished_spans() if s.attributes.get("url.full", "").startswith(client.base_url)]
    assert span.kind is SpanKind.CLIENT and span.status.status_code is StatusCode.ERROR
    assert (span.attributes["server.address"], span.attributes["server.port"]) == ("127.0.0.1", port)
