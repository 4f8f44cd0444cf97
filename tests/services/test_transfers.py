"""Transfers through the public API: validation, money rules, idempotency, failure handling."""

import concurrent.futures
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from obslab.services.accounts.ledger import movements
from tests.support import Customer


def test_a_transfer_moves_money_between_two_customers(funded):
    alice, alice_account = funded(10_000)
    bob, bob_account = funded(500)
    response = alice.transfer(alice_account, bob_account, "12.34")
    assert response.status_code == 201, response.text
    transfer = response.json()
    assert transfer["status"] == "completed" and transfer["amount"] == "12.34" and transfer["currency"] == "EUR"
    assert transfer["id"].startswith("trf_")
    assert alice.balances()[alice_account] == "87.66"
    assert bob.balances()[bob_account] == "17.34"
    history = bob.session.get(f"{bob.gateway}/transfers", params={"account": bob_account}).json()
    assert [t["id"] for t in history] == [transfer["id"]]


def test_the_same_idempotency_key_twice_moves_money_once_and_replays_the_first_answer(funded, stack):
    alice, account = funded(10_000)
    savings = alice.open_account()
    first = alice.transfer(account, savings, "30.00", key="rent-2026-11")
    second = alice.transfer(account, savings, "30.00", key="rent-2026-11")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert alice.balances() == {account: "70.00", savings: "30.00"}


def test_reusing_a_key_for_a_different_transfer_is_refused_and_changes_nothing(funded):
    alice, account = funded(10_000)
    savings = alice.open_account()
    assert alice.transfer(account, savings, "5.00", key="k-1").status_code == 201
    reused = alice.transfer(account, savings, "6.00", key="k-1")
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"
    assert alice.balances()[account] == "95.00"


def test_idempotency_keys_belong_to_one_customer(funded):
    alice, alice_account = funded(10_000)
    bob, bob_account = funded(10_000)
    assert alice.transfer(alice_account, bob_account, "1.00", key="shared-key").status_code == 201
    assert bob.transfer(bob_account, alice_account, "2.00", key="shared-key").status_code == 201
    assert alice.balances()[alice_account] == "101.00"


def test_concurrent_duplicates_of_one_request_move_money_once(funded, stack):
    alice, account = funded(10_000)
    savings = alice.open_account()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: alice.transfer(account, savings, "10.00", key="burst"), range(8)))
    done = [r for r in responses if r.status_code == 201]
    assert done and {r.json()["id"] for r in done} == {done[0].json()["id"]}
    assert all(r.status_code in (201, 409) for r in responses)
    assert alice.balances() == {account: "90.00", savings: "10.00"}


def test_insufficient_funds_is_a_final_422_and_no_balance_goes_negative(funded):
    alice, account = funded(1_000)
    savings = alice.open_account()
    response = alice.transfer(account, savings, "10.01", key="too-much")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "insufficient_funds" and body["status"] == "rejected"
    assert alice.balances() == {account: "10.00", savings: "0.00"}
    replay = alice.transfer(account, savings, "10.01", key="too-much")
    assert replay.status_code == 422 and replay.headers.get("Idempotent-Replayed") == "true"
    history = alice.session.get(f"{alice.gateway}/transfers", params={"account": account}).json()
    assert history[0]["status"] == "rejected" and history[0]["error"] == "insufficient_funds"


def test_a_currency_mismatch_is_refused(funded):
    alice, account = funded(10_000)
    dollars = alice.open_account("USD")
    response = alice.transfer(account, dollars, "1.00")
    assert response.status_code == 422
    assert response.json()["error"] == "currency_mismatch"


def test_a_transfer_to_an_unknown_account_is_a_404_and_moves_nothing(funded):
    alice, account = funded(10_000)
    response = alice.transfer(account, "acc_doesnotexist0000", "1.00")
    assert response.status_code == 404
    assert alice.balances()[account] == "100.00"


def test_a_large_transfer_from_a_busy_customer_is_refused_by_risk_checks(funded, stack):
    alice, account = funded(5_000_000)
    other = Customer(stack.url("gateway")).open_account()
    for _ in range(20):  # velocity
        assert alice.transfer(account, other, "0.01").status_code == 201
    response = alice.transfer(account, other, "15000.00")
    assert response.status_code == 422
    assert response.json()["error"] == "risk_rejected"
    assert alice.balances()[account] == "49999.80"


@pytest.mark.parametrize("body, field", [
    ({"to_account": "acc_x", "amount": "1.00", "currency": "EUR"}, "from_account"),
    ({"from_account": "acc_x", "to_account": "acc_x", "amount": "1.00", "currency": "EUR"}, "body"),
    ({"from_account": "acc_x", "to_account": "acc_y", "amount": "-1", "currency": "EUR"}, "amount"),
    ({"from_account": "acc_x", "to_account": "acc_y", "amount": "1.001", "currency": "EUR"}, "amount"),
    ({"from_account": "acc_x", "to_account": "acc_y", "amount": "1", "currency": "XYZ"}, "currency"),
    ({"from_account": "acc_x", "to_account": "acc_y", "amount": "1", "currency": "EUR", "memo": "x"}, "memo"),
])
def test_invalid_transfers_are_400s_naming_the_problem(funded, body, field):
    alice, _account = funded()
    response = alice.session.post(f"{alice.gateway}/transfers", json=body,
                                  headers={"Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 400
    error = response.json()
    assert error["error"] == "invalid_request" and error["message"].startswith(field)


@pytest.mark.parametrize("key, code", [(None, "missing_idempotency_key"), ("has space", "invalid_idempotency_key"),
                                       ("x" * 256, "invalid_idempotency_key")])
def test_transfers_need_a_sane_idempotency_key(funded, key, code):
    alice, account = funded()
    headers = {} if key is None else {"Idempotency-Key": key}
    response = alice.session.post(f"{alice.gateway}/transfers", headers=headers, json={
        "from_account": account, "to_account": "acc_y", "amount": "1.00", "currency": "EUR"})
    assert response.status_code == 400 and response.json()["error"] == code


def test_each_transfer_is_one_ledger_movement(funded, stack):
    alice, account = funded(10_000)
    savings = alice.open_account()
    ids = [alice.transfer(account, savings, "1.00").json()["id"] for _ in range(3)]
    db = stack.app("accounts").extensions["obslab"].db
    with db.connect() as conn:
        count = conn.execute(select(func.count()).select_from(movements).where(movements.c.id.in_(ids))).scalar_one()
    assert count == 3


def test_history_needs_an_account_and_pages_with_limit(funded):
    alice, account = funded(10_000)
    savings = alice.open_account()
    for _ in range(3):
        alice.transfer(account, savings, "1.00")
    assert alice.session.get(f"{alice.gateway}/transfers").status_code == 400
    page = alice.session.get(f"{alice.gateway}/transfers", params={"account": account, "limit": 2})
    assert page.status_code == 200 and len(page.json()) == 2
    assert alice.session.get(f"{alice.gateway}/transfers", params={"account": account, "limit": 0}).status_code == 400


def _exposed(stack, service: str, name: str, **labels: str) -> float:
    """One sample as the service's /metrics exposition shows it (0 when absent)."""
    text = requests.get(f"{stack.url(service)}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_a_completed_transfer_observes_its_value_in_major_units_and_a_rejected_one_does_not(funded, stack):
    alice, account = funded(100_000, "USD")
    savings = alice.open_account("USD")
    labels = {"type": "transfer", "currency": "USD"}

    def value() -> tuple[float, float, float, float]:
        return (_exposed(stack, "transactions", "transaction_value_count", **labels),
                _exposed(stack, "transactions", "transaction_value_sum", **labels),
                _exposed(stack, "transactions", "transaction_value_bucket", **labels, le="10.0"),
                _exposed(stack, "transactions", "transaction_value_bucket", **labels, le="25.0"))

    count, total, le10, le25 = value()
    assert alice.transfer(account, savings, "12.34", currency="USD").status_code == 201
    assert value() == pytest.approx((count + 1, total + 12.34, le10, le25 + 1))
    refused = alice.transfer(account, savings, "5000.00", currency="USD")         # more than the balance
    assert refused.status_code == 422 and refused.json()["status"] == "rejected"
    assert value() == pytest.approx((count + 1, total + 12.34, le10, le25 + 1))
