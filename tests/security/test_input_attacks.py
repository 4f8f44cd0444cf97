"""Attacks through the values a customer types: amounts, ids, query parameters.

Each test is named after the attack it stops. Amounts follow one strict grammar
(services/common/money.py: AMOUNT_PATTERN, the public API document's ``Amount``): a JSON string of
ASCII digits with at most two decimals, greater than 0 and at most 1000000.00; everything a lenient
parser would also read (``1_000``, `` 5``, ``5.``, ``1e6``, ``²``, a JSON number) is a 400 that
names the amount, and nothing moves. The module's stack fixture (conftest.py) checks the books.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from obslab import conventions as c
from obslab.services.common import money
from tests.support import Customer, deposit


@pytest.fixture(scope="module")
def alice(stack) -> tuple[Customer, str, str]:
    """A customer with 100.00 EUR in checking and an empty savings account."""
    customer = Customer(stack.url(c.GATEWAY))
    checking, savings = customer.open_account(), customer.open_account(type_="savings")
    deposit(stack.url(c.ACCOUNTS), checking, 10_000)
    return customer, checking, savings


@pytest.fixture
def funded(stack) -> tuple[Customer, str, str]:
    """A new customer (their own idempotency keys and history) with 100.00 EUR, and savings."""
    customer = Customer(stack.url(c.GATEWAY))
    checking, savings = customer.open_account(), customer.open_account(type_="savings")
    deposit(stack.url(c.ACCOUNTS), checking, 10_000)
    return customer, checking, savings


def history(customer: Customer, account: str) -> list[dict]:
    response = customer.session.get(f"{customer.gateway}/transfers", params={"account": account}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def post_raw(customer: Customer, route: str, body: bytes, key: str | None = None):
    return customer.session.post(f"{customer.gateway}{route}", data=body, timeout=30, headers={
        "Content-Type": "application/json", c.HEADER_IDEMPOTENCY_KEY: key or uuid.uuid4().hex})


def assert_refused_for_its_amount(response) -> None:
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error"] == "invalid_request" and error["message"].startswith("amount: "), error
    assert [problem["field"] for problem in error["fields"]] == ["amount"]


LENIENT_PARSER_AMOUNTS = [
    "1_000", "1_000.00", " 5", "5 ", "\t5", "5\n", "5.", ".5", "1e6", "1E2", "5e-1", "+5", "-5", "05", "007.50",
    "0x10", "1,000", "1.000,00", "5.005", "NaN", "Infinity", "-0", "", "0", "0.00",
    "1000000.01", "9999999999",
    "\u00b2",   # superscript two: str.isdigit() says yes
    "\u0665",   # Arabic-Indic five: Decimal() reads it as 5
    "\uff15",   # fullwidth five: int() and Decimal() read it as 5
]


@pytest.mark.parametrize("amount", LENIENT_PARSER_AMOUNTS, ids=[repr(a) for a in LENIENT_PARSER_AMOUNTS])
def test_amounts_with_underscores_spaces_exponents_or_a_trailing_dot_are_refused(alice, amount):
    customer, checking, savings = alice
    assert_refused_for_its_amount(customer.transfer(checking, savings, amount))
    assert_refused_for_its_amount(customer.pay(checking, "Electric Co", amount))
    assert customer.balances() == {checking: "100.00", savings: "0.00"}


@pytest.mark.parametrize("raw", ["5", "5.0", "2.5", "1e2", "0.30000000000000004", "100000000000000000000", "-0"])
def test_a_json_number_amount_is_refused(alice, raw):
    """Refused rather than parsed: a JSON number is a float to most clients, and what it meant
    (``0.1 + 0.2``, ``1e2``) is a guess. The document says amounts are strings."""
    customer, checking, savings = alice
    body = f'{{"from_account": "{checking}", "to_account": "{savings}", "amount": {raw}, "currency": "EUR"}}'
    response = post_raw(customer, "/transfers", body.encode())
    assert_refused_for_its_amount(response)
    assert "JSON string" in response.json()["message"]
    assert customer.balances()[checking] == "100.00"


@pytest.mark.parametrize("second", ["2", "2.0", "2.00"])
def test_the_same_key_with_2_00_and_2_is_one_transfer(funded, second):
    customer, checking, savings = funded
    key = uuid.uuid4().hex
    first = customer.transfer(checking, savings, "2.00", key=key)
    assert first.status_code == 201, first.text
    again = customer.transfer(checking, savings, second, key=key)
    assert again.status_code == 201, again.text
    assert again.headers.get(c.HEADER_IDEMPOTENT_REPLAYED) == "true" and again.json() == first.json()
    assert customer.balances() == {checking: "98.00", savings: "2.00"}
    assert [t["id"] for t in history(customer, checking)] == [first.json()["id"]]


def test_the_same_key_with_2_00_and_2_is_one_payment(funded):
    customer, checking, _savings = funded
    key = uuid.uuid4().hex
    first = customer.pay(checking, "Electric Co", "2.00", key=key)
    assert first.status_code == 201, first.text
    again = customer.pay(checking, "Electric Co", "2", key=key)
    assert again.status_code == 201 and again.headers.get(c.HEADER_IDEMPOTENT_REPLAYED) == "true"
    assert again.json() == first.json() and customer.balances()[checking] == "98.00"


def test_the_same_key_with_another_amount_is_refused_not_a_second_transfer(funded):
    customer, checking, savings = funded
    key = uuid.uuid4().hex
    assert customer.transfer(checking, savings, "2.00", key=key).status_code == 201
    reused = customer.transfer(checking, savings, "2.01", key=key)
    assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused", reused.text
    assert customer.balances() == {checking: "98.00", savings: "2.00"}


LIMITS = ["\u00b2", "\u0663", "\uff11", "1e2", " 5", "5 ", "+5", "-1", "0", "201", "0x10", "5.0", "",
          "99999999999999999999"]


@pytest.mark.parametrize("limit", LIMITS, ids=[repr(v) for v in LIMITS])
def test_a_superscript_digit_in_limit_is_a_400_not_a_500(alice, limit):
    customer, checking, _savings = alice
    response = customer.session.get(f"{customer.gateway}/transfers", params={"account": checking, "limit": limit},
                                    timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_limit"


@pytest.mark.parametrize("target", ["acc_x", money.system_account_id(money.SYSTEM_ACCOUNT_SETTLEMENT, "EUR"),
                                    money.system_account_id(money.SYSTEM_ACCOUNT_CASH, "EUR"), "acc_" + "a" * 17])
def test_an_account_id_that_cannot_exist_is_not_found_and_never_echoed_back(funded, target):
    """Such an id used to be recorded (and scored) before the ledger refused it, so that the
    sender's history showed it back as a transfer's ``to_account``, which the document says is
    always an ``acc_`` id."""
    customer, checking, _savings = funded
    response = customer.transfer(checking, target, "1.00")
    assert response.status_code == 404 and response.json()["error"] == "account_not_found", response.text
    paid = customer.pay(target, "Electric Co", "1.00")
    assert paid.status_code == 404 and paid.json()["error"] == "account_not_found", paid.text
    assert history(customer, checking) == [] and customer.balances()[checking] == "100.00"


@pytest.mark.parametrize("merchant", [" Electric Co", "\tElectric Co", "Electric Co\n", "Electric\u00a0Co"])
def test_a_merchant_name_with_hidden_whitespace_is_refused(alice, merchant):
    customer, checking, _savings = alice
    response = customer.pay(checking, merchant, "1.00")
    assert response.status_code == 400 and response.json()["message"].startswith("merchant: "), response.text


def test_a_duplicated_amount_key_moves_exactly_what_the_answer_says(funded):
    """Two ``amount`` keys in one body: whichever one the API reads, it debits that and says so
    (a proxy that read the other one would at least see the real amount in the answer)."""
    customer, checking, savings = funded
    body = (f'{{"from_account": "{checking}", "to_account": "{savings}", "amount": "1.00", '
            f'"amount": "50.00", "currency": "EUR"}}').encode()
    response = post_raw(customer, "/transfers", body)
    assert response.status_code == 201, response.text
    moved = response.json()["amount"]
    assert moved in ("1.00", "50.00")
    assert customer.balances() == {checking: str(Decimal("100.00") - Decimal(moved)), savings: moved}
