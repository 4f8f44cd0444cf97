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
from obslab.services.common.money import AMOUNT_PATTERN, AMOUNT_SCHEMA_PATTERN

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


def schemas(spec: OpenAPI) -> dict:
    return (spec.spec / "components" / "schemas").read_value()


def operations(spec: OpenAPI):
    for path, item in (spec.spec / "paths").read_value().items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method, path, operation


def test_amounts_are_strings_in_the_one_grammar_money_py_defines(spec):
    amount = schemas(spec)["Amount"]
    assert amount["type"] == "string" and "oneOf" not in amount  # no JSON numbers
    assert amount["pattern"] == AMOUNT_SCHEMA_PATTERN
    assert AMOUNT_PATTERN in amount["description"]
    for text in ("0", "0.00", "1000000.01", "1_000", " 5", "5.", "1e6", "05"):
        assert not re.fullmatch(amount["pattern"], text), text
    for text in ("0.01", "5", "12.34", "1000000.00"):
        assert re.fullmatch(amount["pattern"], text), text


def test_usernames_are_documented_as_auth_accepts_them(spec):
    from obslab.services.auth.app import Credentials

    auth_pattern = Credentials.model_json_schema()["properties"]["username"]["pattern"]
    assert schemas(spec)["Username"]["pattern"] == auth_pattern
    assert not re.fullmatch(auth_pattern, "Alice")


def test_ids_have_the_forms_the_gateway_checks(spec):
    from obslab.services.gateway.app import ACCOUNT_ID, PAYMENT_ID, TRANSFER_ID

    documented = schemas(spec)
    for name, pattern in (("AccountId", ACCOUNT_ID), ("TransferId", TRANSFER_ID), ("PaymentId", PAYMENT_ID)):
        assert documented[name]["pattern"] == f"^{pattern.pattern}$", name
    parameters = {parameter["name"]: parameter["schema"]["$ref"].rsplit("/", 1)[-1]
                  for _, path, operation in operations(spec)
                  for parameter in [*(spec.spec / "paths" / path).read_value().get("parameters", []),
                                    *operation.get("parameters", [])]
                  if "name" in parameter and "$ref" in parameter.get("schema", {})}
    parameters["account_id"] = "AccountId"  # through #/components/parameters/AccountId
    assert parameters == {"account_id": "AccountId", "account": "AccountId", "transfer_id": "TransferId",
                          "payment_id": "PaymentId"}


def test_every_answer_the_api_can_give_is_documented_with_the_error_shape(spec):
    for method, path, operation in operations(spec):
        statuses = set(operation["responses"])
        secured = operation.get("security") != []
        expected = {"429", "503", "504"} | ({"401"} if secured else set())
        if method == "post":
            expected |= {"400", "413"}
        if path.endswith("}") or (path == "/api/v1/transfers" and method == "get"):
            expected.add("404")
        if operation["operationId"] in ("createTransfer", "createPayment"):
            expected |= {"404", "409", "422"}
        if operation["operationId"] == "openAccount":
            expected.add("422")
        assert expected <= statuses, (method, path, expected - statuses)
    error = schemas(spec)["Error"]
    assert error["required"] == ["error", "message"] and error.get("additionalProperties", True) is not False
    responses = (spec.spec / "components" / "responses").read_value()
    for name, response in responses.items():
        assert response["content"]["application/json"]["schema"]["$ref"].endswith("/Error"), name
    assert responses["RateLimited"]["headers"]["Retry-After"]["$ref"].endswith("/RetryAfter")


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
    number = alice.session.post(f"{api}/transfers", headers={"Idempotency-Key": uuid.uuid4().hex}, json={
        "from_account": account, "to_account": savings, "amount": 10, "currency": "EUR"})
    exchanges += [
        alice.session.get(f"{api}/transfers/{transfer_id}"),
        alice.session.get(f"{api}/payments/{payment_id}"),
        alice.session.get(f"{api}/payments/pay_0000000000000000"),
        alice.session.get(f"{api}/transfers/trf_not-a-transfer-id"),
        alice.transfer(account, savings, "10", key=key),  # "10.00" before: the same request
        alice.transfer(account, savings, "0"),
        number,
        alice.session.post(f"{api}/payments", data=b"{" + b" " * 70_000 + b"}",
                           headers={"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}),
    ]
    statuses = []
    for response in exchanges:
        request = RequestsOpenAPIRequest(response.request)
        spec.validate_request(request) if response.status_code < 400 else None
        spec.validate_response(request, RequestsOpenAPIResponse(response))
        statuses.append(response.status_code)
    assert statuses == [201, 409, 400, 401, 401, 200, 200, 404, 201, 201, 201, 422, 404, 200, 400, 201, 422,
                        200, 200, 404, 404, 201, 400, 400, 413]
    assert exchanges[21].headers["Idempotent-Replayed"] == "true" and exchanges[21].json() == exchanges[9].json()


def test_an_answer_that_breaks_the_document_is_caught(spec, stack, funded):
    alice, _ = funded()
    response = alice.session.get(f"{alice.gateway}/accounts")
    response._content = b'[{"id": "acc_x", "currency": "EUR", "balance": 12.5}]'  # a float balance
    with pytest.raises(Exception, match="balance|does not match|not valid"):
        spec.validate_response(RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response))
