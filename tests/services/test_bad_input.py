"""Bad input anywhere is a 4xx with a JSON body naming the problem: never a 500."""

import uuid

import pytest
import requests

MALFORMED_BODIES = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'"text"',
    b"42",
    b'{"amount": 1e999999}',
    b'{"amount": "1e999999"}',
    b'{"amount": "1_000", "currency": "EUR"}',
    b'{"amount": 12.5, "currency": "EUR"}',
    "{\"amount\": \"\u00b2\"}".encode(),
    b'{"username": null, "password": null}',
    b'{"from_account": {"$gt": ""}}',
    "{\"merchant\": \"\u202e\u0000\"}".encode(),
    b"\xff\xfe\x00garbage",
    b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
]

POST_ROUTES = ["/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/accounts", "/api/v1/transfers",
               "/api/v1/payments"]


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("body", MALFORMED_BODIES, ids=range(len(MALFORMED_BODIES)))
def test_malformed_bodies_get_a_400_with_a_json_reason(shared_customer, route, body):
    customer = shared_customer
    response = customer.session.post(customer.gateway.removesuffix("/api/v1") + route, data=body, headers={
        "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex})
    assert 400 <= response.status_code < 500, response.text
    error = response.json()
    assert set(error) >= {"error", "message"} and error["message"]


def test_unknown_routes_and_methods_are_json_4xx(gateway):
    missing = requests.get(f"{gateway}/api/v1/no-such-thing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong_method = requests.delete(f"{gateway}/api/v1/auth/login")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]


# Amounts outside the one grammar (services/common/money.py: AMOUNT_PATTERN), and out of bounds.
BAD_AMOUNTS = ["1_000", " 5", "5 ", "5.", ".5", "1e6", "+5", "-5", "05", "1.005", "1,00", "NaN", "Infinity",
               "", "0", "0.00", "1000000.01", "\u00b2", "\u0665", "\uff15", "5\n", 5, 2.5, 1e6, None, True, ["5"]]


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=[repr(a) for a in BAD_AMOUNTS])
@pytest.mark.parametrize("route", ["/api/v1/transfers", "/api/v1/payments"])
def test_amounts_outside_the_grammar_get_a_400_naming_the_amount(shared_customer, route, amount):
    customer = shared_customer
    body = {"from_account": "acc_aaaaaaaaaaaaaaaa", "to_account": "acc_bbbbbbbbbbbbbbbb"} \
        if route.endswith("transfers") else {"account": "acc_aaaaaaaaaaaaaaaa", "merchant": "Shop"}
    response = customer.session.post(customer.gateway.removesuffix("/api/v1") + route, headers={
        "Idempotency-Key": uuid.uuid4().hex}, json={**body, "amount": amount, "currency": "EUR"})
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error"] == "invalid_request" and error["message"].startswith("amount: ")
    assert [problem["field"] for problem in error["fields"]] == ["amount"]
