"""Payments: fraud -> accounts -> external card processor; declines are refunded."""

import uuid

import pytest
import requests

from obslab import conventions as c



def test_an_approved_payment_debits_the_account_once(funded):
    alice, account = funded(10_000)
    response = alice.pay(account, "Electric Co", "42.10", key="bill-11")
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "completed" and payment["merchant"] == "Electric Co" and payment["amount"] == "42.10"
    replay = alice.pay(account, "Electric Co", "42.10", key="bill-11")
    assert replay.json() == payment and replay.headers["Idempotent-Replayed"] == "true"
    assert alice.balances()[account] == "57.90"
    fetched = alice.session.get(f"{alice.gateway}/payments/{payment['id']}")
    assert fetched.json()["status"] == "completed"


def test_a_declined_payment_is_refunded_and_reported(funded):
    alice, account = funded(10_000)
    response = alice.pay(account, "test-decline shop", "15.00")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "payment_declined" and body["status"] == "declined"
    assert alice.balances()[account] == "100.00"
    fetched = alice.session.get(f"{alice.gateway}/payments/{body['payment_id']}").json()
    assert fetched["status"] == "declined"


def test_a_payment_without_funds_is_refused(funded):
    alice, account = funded(500)
    response = alice.pay(account, "Electric Co", "5.01")
    assert response.status_code == 422 and response.json()["error"] == "insufficient_funds"
    assert alice.balances()[account] == "5.00"


def test_a_large_payment_to_a_risky_merchant_is_denied_before_money_moves(funded):
    alice, account = funded(3_000_000)
    response = alice.pay(account, "Crypto Exchange", "15000.00")
    assert response.status_code == 422 and response.json()["error"] == "risk_rejected"
    assert alice.balances()[account] == "30000.00"


@pytest.mark.parametrize("body, field", [
    ({"account": "acc_x", "merchant": "", "amount": "1.00", "currency": "EUR"}, "merchant"),
    ({"account": "acc_x", "merchant": "<script>", "amount": "1.00", "currency": "EUR"}, "merchant"),
    ({"account": "acc_x", "merchant": "Shop", "amount": "0", "currency": "EUR"}, "amount"),
    ({"account": "acc_x", "merchant": "Shop", "amount": "1.00"}, "currency"),
])
def test_invalid_payments_are_400s_naming_the_field(funded, body, field):
    alice, _ = funded()
    response = alice.session.post(f"{alice.gateway}/payments", json=body,
                                  headers={"Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 400
    assert response.json()["message"].startswith(field)


def test_payment_metrics_follow_the_seed_schema(funded, stack):
    alice, account = funded(10_000)
    registry = stack.app("payments").extensions["obslab"].metrics.registry
    before = registry.get_sample_value("transaction_requests_total", {"type": "payment", "status": "declined"}) or 0
    alice.pay(account, "test-decline-metrics", "1.00")
    after = registry.get_sample_value("transaction_requests_total", {"type": "payment", "status": "declined"})
    assert after == before + 1
    assert registry.get_sample_value("transaction_failures_total",
                                     {"type": "payment", "error_code": "payment_declined"}) >= 1
    assert registry.get_sample_value("transaction_duration_seconds_count", {"type": "payment"}) >= 1
