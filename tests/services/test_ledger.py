"""The accounts service's ledger API, as transactions and payments use it (both databases).

Every call here is what a real caller sends: its signed service token, and for a customer's
operation the gateway's assertion naming that customer (tests/support.py builds both)."""

import uuid

import requests

from obslab import conventions as c
from obslab.services.common import money
from obslab import topology
from tests.support import customer_headers, service_headers


def customer_id() -> str:
    return f"cus_{uuid.uuid4().hex[:16]}"


def open_account(stack, owner: str, currency="EUR") -> str:
    response = requests.post(f"{stack.url('accounts')}/accounts", json={"currency": currency},
                             headers=customer_headers(owner, c.GATEWAY, c.ACCOUNTS), timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def deposit(stack, account: str, amount_minor: int, movement_id: str | None = None) -> requests.Response:
    return requests.post(f"{stack.url('accounts')}/deposits", json={
        "id": movement_id or f"dep-{uuid.uuid4().hex[:12]}", "account": account, "amount_minor": amount_minor,
        "currency": "EUR"}, headers=service_headers(topology.OPERATOR, c.ACCOUNTS), timeout=10)


def move(stack, caller: str = c.TRANSACTIONS, customer: str | None = None, **body) -> requests.Response:
    headers = customer_headers(customer, caller, c.ACCOUNTS) if customer else service_headers(caller, c.ACCOUNTS)
    return requests.post(f"{stack.url('accounts')}/movements", json=body, headers=headers, timeout=10)


def balances(stack, owner: str) -> dict[str, int]:
    response = requests.get(f"{stack.url('accounts')}/accounts", headers=customer_headers(owner, c.GATEWAY, c.ACCOUNTS),
                            timeout=10)
    assert response.status_code == 200, response.text
    return {a["id"]: a["balance_minor"] for a in response.json()}


def test_a_movement_applies_once_per_id_and_a_conflicting_reuse_is_refused(stack):
    owner, other = customer_id(), customer_id()
    source, target = open_account(stack, owner), open_account(stack, other)
    assert deposit(stack, source, 1000).status_code == 201
    body = {"id": f"mv-{source}", "kind": "transfer", "debit_account": source, "credit_account": target,
            "amount_minor": 250, "currency": "EUR"}
    first, second = move(stack, customer=owner, **body), move(stack, customer=owner, **body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["replayed"] is True
    conflict = move(stack, customer=owner, **{**body, "amount_minor": 251})
    assert conflict.status_code == 409 and conflict.json()["error"] == "movement_conflict"
    assert balances(stack, owner)[source] == 750 and balances(stack, other)[target] == 250


def test_the_ledger_never_creates_or_destroys_money(stack):
    source = open_account(stack, customer_id())
    assert deposit(stack, source, 5000).status_code == 201
    from obslab.services.accounts.ledger import Ledger

    ledger = Ledger(stack.app("accounts").extensions["obslab"].db)
    assert ledger.total_balance() == 0  # the cash account went negative by what was deposited
    cash = ledger.account(money.system_account_id("cash", "EUR"))
    assert cash["balance_minor"] < 0
    assert ledger.invariant_violations() == []


def test_internal_validation_errors_are_400s(stack):
    owner = customer_id()
    response = move(stack, customer=owner, id="x", kind="teleport", debit_account="a", credit_account="b",
                    amount_minor=1, currency="EUR")
    assert response.status_code == 400 and response.json()["message"].startswith("kind")
    response = move(stack, customer=owner, id="x", kind="transfer", debit_account="a", credit_account="b",
                    amount_minor=1.5, currency="EUR")
    assert response.status_code == 400 and response.json()["message"].startswith("amount_minor")


def test_a_customer_holds_at_most_ten_accounts(stack):
    owner = customer_id()
    for _ in range(10):
        open_account(stack, owner)
    response = requests.post(f"{stack.url('accounts')}/accounts", json={"currency": "EUR"},
                             headers=customer_headers(owner, c.GATEWAY, c.ACCOUNTS), timeout=10)
    assert response.status_code == 422 and response.json()["error"] == "too_many_accounts"


def test_a_refund_returns_one_payment_once_to_the_account_it_debited(stack):
    owner = customer_id()
    account = open_account(stack, owner)
    assert deposit(stack, account, 1000).status_code == 201
    settlement = money.system_account_id(money.SYSTEM_ACCOUNT_SETTLEMENT, "EUR")
    payment = {"id": f"pay_{uuid.uuid4().hex[:16]}", "kind": "payment", "debit_account": account,
               "credit_account": settlement, "amount_minor": 300, "currency": "EUR"}
    assert move(stack, c.PAYMENTS, owner, **payment).status_code == 201
    refund = {"id": f"{payment['id']}-refund", "kind": "refund", "debit_account": settlement,
              "credit_account": account, "amount_minor": 300, "currency": "EUR"}
    too_much = move(stack, c.PAYMENTS, **{**refund, "amount_minor": 301})
    assert too_much.status_code == 422 and too_much.json()["error"] == "refund_without_payment"
    assert move(stack, c.PAYMENTS, **refund).status_code == 201
    assert move(stack, c.PAYMENTS, **refund).status_code == 200   # replayed: returned once
    unrelated = move(stack, c.PAYMENTS, **{**refund, "id": "pay_0000000000000000-refund"})
    assert unrelated.status_code == 422
    assert balances(stack, owner)[account] == 1000
