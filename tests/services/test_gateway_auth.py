"""Every business request needs a valid token; nobody reaches another customer's money."""

import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from obslab import conventions as c
from obslab import secrets
from obslab.services.common import tokens
from obslab.services.gateway.app import create_app as gateway_app
from obslab.services.gateway.edge import CustomerWindow
from tests.support import Customer, serve

BUSINESS_ROUTES = [
    ("GET", "/api/v1/accounts"),
    ("POST", "/api/v1/accounts"),
    ("GET", "/api/v1/accounts/acc_0000000000000000"),
    ("POST", "/api/v1/transfers"),
    ("GET", "/api/v1/transfers?account=acc_0000000000000000"),
    ("GET", "/api/v1/transfers/trf_0000000000000000"),
    ("POST", "/api/v1/payments"),
    ("GET", "/api/v1/payments/pay_0000000000000000"),
]


@pytest.mark.parametrize("method, path", BUSINESS_ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt"])
def test_business_routes_refuse_requests_without_a_valid_token(gateway, method, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.request(method, gateway + path, headers=headers, json={})
    assert response.status_code == 401
    assert response.json()["error"] in ("unauthenticated", "invalid_token")


def test_an_expired_token_is_refused_with_the_reason(gateway):
    token = tokens.issue(secrets.jwt_secret(), tokens.Identity("cus_x", "x"), 60, now=time.time() - 7200)
    response = requests.get(f"{gateway}/api/v1/accounts", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


def test_a_customer_cannot_see_or_move_another_customers_money(funded):
    alice, alice_account = funded()
    mallory, mallory_account = funded()
    assert alice_account not in mallory.balances()
    seen = mallory.session.get(f"{mallory.gateway}/accounts/{alice_account}")
    assert seen.status_code == 404
    history = mallory.session.get(f"{mallory.gateway}/transfers", params={"account": alice_account})
    assert history.status_code == 404
    stolen = mallory.transfer(alice_account, mallory_account, "10.00")
    assert stolen.status_code == 404
    assert stolen.json()["error"] == "account_not_found"
    paid = mallory.pay(alice_account, "Electric Co", "10.00")
    assert paid.status_code == 404
    assert alice.balances()[alice_account] == "100.00"
    transfer = alice.transfer(alice_account, mallory_account, "1.00").json()
    assert mallory.session.get(f"{mallory.gateway}/transfers/{transfer['id']}").status_code == 404


def test_every_response_carries_a_w3c_traceresponse_header(gateway):
    for response in (requests.get(f"{gateway}/api/v1/accounts"),
                     requests.post(f"{gateway}/api/v1/auth/login", json={"username": "x", "password": "y"}),
                     requests.get(f"{gateway}/api/v1/nothing-here")):
        version, trace_id, span_id, flags = response.headers["traceresponse"].split("-")
        assert version == "00" and len(trace_id) == 32 and len(span_id) == 16 and len(flags) == 2
        assert int(trace_id, 16) != 0


def test_active_customers_are_distinct_token_holders_per_window_and_idle_ones_leave(stack, tmp_path):
    """A gateway of its own with a clock the test moves; the numbers as its /metrics shows them."""
    now = [10_000.0]
    gateway = serve(gateway_app(
        f"sqlite:///{tmp_path / 'gateway.sqlite3'}",
        peer_urls={name: stack.url(name) for name in (c.AUTH, c.ACCOUNTS, c.TRANSACTIONS, c.PAYMENTS)},
        customers=CustomerWindow(c.ACTIVE_CUSTOMER_WINDOWS, clock=lambda: now[0]),
    ))

    def active() -> dict[str, float]:
        text = requests.get(f"{gateway.url}/metrics", timeout=10).text
        assert "cus_" not in text                                    # never an id
        return {sample.labels["window"]: sample.value for family in text_string_to_metric_families(text)
                for sample in family.samples if sample.name == c.GATEWAY_ACTIVE_CUSTOMERS.name}

    try:
        alice, bob = Customer(gateway.url), Customer(gateway.url)   # register and log in: no token yet
        assert active() == {"5m": 0, "1h": 0}
        requests.get(f"{gateway.url}/api/v1/accounts", headers={"Authorization": "Bearer not.a.jwt"})
        assert active() == {"5m": 0, "1h": 0}                        # a refused token is nobody
        for customer in (alice, bob, alice):
            customer.balances()
        assert active() == {"5m": 2, "1h": 2}
        now[0] += 240
        bob.balances()
        now[0] += 120                                                # alice idle 6 minutes, bob 2
        assert active() == {"5m": 1, "1h": 2}
        now[0] += 3600
        assert active() == {"5m": 0, "1h": 0}
    finally:
        gateway.stop()
