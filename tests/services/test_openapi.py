"""services/gateway/openapi.yaml describes the running gateway: same routes, real answers conform."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

import obslab.services.gateway as gateway_package
from obslab import conventions as c

SPEC_PATH = Path(gateway_package.__file__).parent / "openapi.yaml"


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC_PATH))  # validates the document itself


def documented(spec: OpenAPI) -> set[tuple[str, str]]:
    paths = spec.spec / "paths"
    return {(method.upper(), path) for path in paths.keys() for method in (paths / path).keys()
            if method in ("get", "post", "put", "patch", "delete")}


def test_the_document_and_the_app_have_exactly_the_same_public_routes(spec, stack):
    served = set()
    for rule in stack.app("gateway").url_map.iter_rules():
        if rule.rule.startswith(c.API_PREFIX):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            served |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == documented(spec)


def test_real_requests_and_answers_conform_to_the_document(spec, stack, funded):
    alice, account = funded(10_000)
    savings = alice.open_account(type_="savings")
    api = alice.gateway
    key = uuid.uuid4().hex
    exchanges = [
        requests.post(f"{api}/auth/register", json={"username": f"u{uuid.uuid4().hex[:8]}", "password": "longenough"}),
        requests.post(f"{api}/auth/register", json={"username": alice.username, "password": "longenough"}),
        requests.post(f"{api}/auth/register", json={"username": "x"}),
        requests.post(f"{api}/auth/login", json={"username": alice.username, "password": "wrong"}),
        requests.get(f"{api}/accounts"),
        alice.session.get(f"{api}/accounts"),
        alice.session.get(f"{api}/accounts/{account}"),
        alice.session.get(f"{api}/accounts/acc_0000000000000000"),
        alice.session.post(f"{api}/accounts", json={"currency": "USD"}),
        alice.transfer(account, savings, "10.00", key=key),
        alice.transfer(account, savings, "10.00", key=key),
        alice.transfer(account, savings, "9999.00"),
        alice.transfer(account, "acc_0000000000000000", "1.00"),
        alice.session.get(f"{api}/transfers", params={"account": account}),
        alice.session.get(f"{api}/transfers", params={"account": account, "limit": 1000}),
        alice.pay(account, "Electric Co", "3.50"),
        alice.pay(account, "test-decline", "3.50"),
    ]
    transfer_id = exchanges[9].json()["id"]
    payment_id = exchanges[15].json()["id"]
    exchanges += [
        alice.session.get(f"{api}/transfers/{transfer_id}"),
        alice.session.get(f"{api}/payments/{payment_id}"),
        alice.session.get(f"{api}/payments/pay_0000000000000000"),
    ]
    statuses = []
    for response in exchanges:
        request = RequestsOpenAPIRequest(response.request)
        spec.validate_request(request) if response.status_code < 400 else None
        spec.validate_response(request, RequestsOpenAPIResponse(response))
        statuses.append(response.status_code)
    assert statuses == [201, 409, 400, 401, 401, 200, 200, 404, 201, 201, 201, 422, 404, 200, 400, 201, 422,
                        200, 200, 404]


def test_an_answer_that_breaks_the_document_is_caught(spec, stack, funded):
    alice, _ = funded()
    response = alice.session.get(f"{alice.gateway}/accounts")
    response._content = b'[{"id": "acc_x", "currency": "EUR", "balance": 12.5}]'  # a float balance
    with pytest.raises(Exception, match="balance|does not match|not valid"):
        spec.validate_response(RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response))
