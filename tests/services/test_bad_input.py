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
