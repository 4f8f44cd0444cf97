"""Payments: fraud -> accounts -> external card processor; declines are refunded."""

import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

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


def _samples(stack, service: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of the service's /metrics exposition."""
    text = requests.get(f"{stack.url(service)}/metrics", timeout=10).text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _exposed(stack, service: str, name: str, **labels: str) -> float:
    """One sample as the service's /metrics exposition shows it (0 when absent)."""
    return _samples(stack, service).get((name, frozenset(labels.items())), 0.0)


def test_a_completed_payment_observes_its_value_and_a_declined_or_refused_one_does_not(funded, stack):
    alice, account = funded(10_000, "GBP")
    labels = {"type": "payment", "currency": "GBP"}

    def value() -> tuple[float, float, float]:
        return (_exposed(stack, "payments", "transaction_value_count", **labels),
                _exposed(stack, "payments", "transaction_value_sum", **labels),
                _exposed(stack, "payments", "transaction_value_bucket", **labels, le="50.0"))

    count, total, le50 = value()
    assert alice.pay(account, "Lidl", "42.10", currency="GBP").status_code == 201
    assert value() == pytest.approx((count + 1, total + 42.10, le50 + 1))
    assert alice.pay(account, "test-decline shop", "5.00", currency="GBP").json()["status"] == "declined"
    assert alice.pay(account, "Lidl", "999.00", currency="GBP").json()["error"] == "insufficient_funds"
    assert value() == pytest.approx((count + 1, total + 42.10, le50 + 1))


def test_payments_count_by_merchant_category_and_final_status(funded, stack):
    alice, account = funded(10_000)

    def counted(category: str, status: str) -> float:
        return _exposed(stack, "payments", c.PAYMENTS_BY_CATEGORY.name, merchant_category=category, status=status)

    # Declared at start-up: a series exists (at 0) before the first payment of its kind.
    never = (c.PAYMENTS_BY_CATEGORY.name, frozenset({"merchant_category": "gambling", "status": "failed"}.items()))
    assert _samples(stack, "payments")[never] == 0
    before = {key: counted(*key) for key in [("groceries", "completed"), ("other", "completed"),
                                             ("other", "declined"), ("utilities", "rejected"),
                                             ("travel", "completed")]}
    assert alice.pay(account, "REWE", "3.00").status_code == 201
    assert alice.pay(account, "Corner Shop 42", "2.00").status_code == 201             # not a known merchant
    assert alice.pay(account, "test-decline shop", "1.00").json()["status"] == "declined"
    assert alice.pay(account, "City Power & Light", "500.00").json()["status"] == "rejected"   # no funds
    after = {key: counted(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("groceries", "completed"): 1, ("other", "completed"): 1, ("other", "declined"): 1,
        ("utilities", "rejected"): 1, ("travel", "completed"): 0,
    }
    text = requests.get(f"{stack.url('payments')}/metrics", timeout=10).text
    assert "Corner Shop" not in text and "REWE" not in text                          # no merchant names out
