"""The accounts service's ledger API, as transactions and payments use it (both databases)."""

import requests

from obslab import conventions as c


def open_account(stack, owner="cus_ledger", currency="EUR"):
    response = requests.post(f"{stack.url('accounts')}/accounts", json={"owner": owner, "currency": currency})
    assert response.status_code == 201
    return response.json()["id"]


def move(stack, **body):
    return requests.post(f"{stack.url('accounts')}/movements", json=body)


def test_a_movement_applies_once_per_id_and_a_conflicting_reuse_is_refused(stack):
    source, target = open_account(stack), open_account(stack)
    requests.post(f"{stack.url('accounts')}/deposits", json={
        "id": f"dep-{source}", "account": source, "amount_minor": 1000, "currency": "EUR"}).raise_for_status()
    body = {"id": f"mv-{source}", "kind": "transfer", "debit_account": source, "credit_account": target,
            "amount_minor": 250, "currency": "EUR", "owner": "cus_ledger"}
    first, second = move(stack, **body), move(stack, **body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["replayed"] is True
    conflict = move(stack, **{**body, "amount_minor": 251})
    assert conflict.status_code == 409 and conflict.json()["error"] == "movement_conflict"
    accounts = {a["id"]: a["balance_minor"] for a in
                requests.get(f"{stack.url('accounts')}/accounts", params={"owner": "cus_ledger"}).json()}
    assert accounts[source] == 750 and accounts[target] == 250


def test_the_ledger_never_creates_or_destroys_money(stack):
    source = open_account(stack, owner="cus_sum")
    requests.post(f"{stack.url('accounts')}/deposits", json={
        "id": f"dep-{source}", "account": source, "amount_minor": 5000, "currency": "EUR"}).raise_for_status()
    from obslab.services.accounts.ledger import Ledger

    ledger = Ledger(stack.app("accounts").extensions["obslab"].db)
    assert ledger.total_balance() == 0  # the cash account went negative by what was deposited
    cash = ledger.account(c.system_account_id("cash", "EUR"))
    assert cash["balance_minor"] < 0


def test_internal_validation_errors_are_400s(stack):
    response = move(stack, id="x", kind="teleport", debit_account="a", credit_account="b",
                    amount_minor=1, currency="EUR")
    assert response.status_code == 400 and response.json()["message"].startswith("kind")
    response = move(stack, id="x", kind="transfer", debit_account="a", credit_account="b",
                    amount_minor=1.5, currency="EUR")
    assert response.status_code == 400 and response.json()["message"].startswith("amount_minor")
    assert requests.get(f"{stack.url('accounts')}/accounts").status_code == 400


def test_a_customer_holds_at_most_ten_accounts(stack):
    for _ in range(10):
        open_account(stack, owner="cus_collector")
    response = requests.post(f"{stack.url('accounts')}/accounts", json={"owner": "cus_collector", "currency": "EUR"})
    assert response.status_code == 422 and response.json()["error"] == "too_many_accounts"
