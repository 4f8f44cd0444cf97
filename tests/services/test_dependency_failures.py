"""When a dependency is down, callers get a clear 503/504, money never moves twice, and a retry
with the same Idempotency-Key resumes the same transfer once the dependency is back."""

import uuid
from types import SimpleNamespace

import pytest
import requests

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
