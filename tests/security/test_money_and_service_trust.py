"""Attacks on the bank's money and on the trust between its services, through the real stack.

Each test is named after the attack it stops. The module's stack fixture checks the ledger's
invariants when the module ends (tests/security/conftest.py): whatever was attempted here, no
system account moved except through internal operations."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from obslab import conventions as c
from obslab.services.common import money
from obslab import secrets
from obslab import settings
from obslab import topology
from obslab.platform.identity import Signer
from tests.support import Customer, customer_headers, deposit, service_headers

SETTLEMENT = money.system_account_id(money.SYSTEM_ACCOUNT_SETTLEMENT, "EUR")
CASH = money.system_account_id(money.SYSTEM_ACCOUNT_CASH, "EUR")


@pytest.fixture
def funded(stack):
    customer = Customer(stack.url(c.GATEWAY))
    account = customer.open_account()
    deposit(stack.url(c.ACCOUNTS), account, 10_000)
    return customer, account


def system_balance(stack, account_id: str) -> int:
    from obslab.services.accounts.ledger import Ledger

    account = Ledger(stack.app(c.ACCOUNTS).extensions["obslab"].db).account(account_id)
    return 0 if account is None else account["balance_minor"]


def movement(debit: str, credit: str, kind: str = "transfer", amount_minor: int = 100_000_000) -> dict:
    return {"id": f"attack-{uuid.uuid4().hex[:12]}", "kind": kind, "debit_account": debit, "credit_account": credit,
            "amount_minor": amount_minor, "currency": "EUR"}


# --- critical: money out of the bank's own accounts ------------------------------------------------


@pytest.mark.parametrize("system_account", [SETTLEMENT, CASH])
def test_a_customer_cannot_transfer_a_million_out_of_the_banks_own_accounts(stack, funded, system_account):
    customer, own = funded
    before = system_balance(stack, system_account)
    response = customer.transfer(system_account, own, "1000000.00")
    assert response.status_code == 404, response.text
    assert customer.balances()[own] == "100.00"
    assert system_balance(stack, system_account) == before


@pytest.mark.parametrize("system_account", [SETTLEMENT, CASH])
def test_a_customer_cannot_pay_from_the_banks_own_accounts(stack, funded, system_account):
    customer, own = funded
    before = system_balance(stack, system_account)
    response = customer.pay(system_account, "Anything Ltd", "1000.00")
    assert response.status_code == 404, response.text
    assert system_balance(stack, system_account) == before


def test_a_customer_cannot_transfer_into_the_banks_own_accounts(stack, funded):
    customer, own = funded
    before = system_balance(stack, SETTLEMENT)
    response = customer.transfer(own, SETTLEMENT, "10.00")
    assert response.status_code == 404, response.text
    assert customer.balances()[own] == "100.00" and system_balance(stack, SETTLEMENT) == before


def test_a_customer_cannot_debit_another_customers_account(stack, funded):
    thief, own = funded
    victim = Customer(stack.url(c.GATEWAY))
    victim_account = victim.open_account()
    deposit(stack.url(c.ACCOUNTS), victim_account, 5_000)
    response = thief.transfer(victim_account, own, "50.00")
    assert response.status_code == 404, response.text
    assert victim.balances()[victim_account] == "50.00"


def test_a_strangers_refused_attempts_do_not_appear_in_the_owners_history(stack, funded):
    thief, own = funded
    victim = Customer(stack.url(c.GATEWAY))
    victim_account = victim.open_account()
    for amount in ("1.00", "999.00"):
        assert thief.transfer(victim_account, own, amount).status_code == 404
    history = victim.session.get(f"{victim.gateway}/transfers", params={"account": victim_account}, timeout=10)
    assert history.status_code == 200 and history.json() == []


# --- service-to-service authentication -----------------------------------------------------------


def test_a_deposit_without_a_service_credential_creates_no_money(stack, funded):
    _customer, own = funded
    response = requests.post(f"{stack.url(c.ACCOUNTS)}/deposits", json={
        "id": "free-money", "account": own, "amount_minor": 100_000_000, "currency": "EUR"}, timeout=10)
    assert response.status_code == 401 and response.json()["error"] == "service_credential_missing"
    assert _customer.balances()[own] == "100.00"


def test_a_forged_customer_id_header_cannot_move_another_customers_money(stack, funded):
    victim, victim_account = funded
    thief = Customer(stack.url(c.GATEWAY))
    loot = thief.open_account()
    headers = {"X-Customer-Id": victim.id, c.HEADER_IDEMPOTENCY_KEY: uuid.uuid4().hex}
    body = {"from_account": victim_account, "to_account": loot, "amount": "100.00", "currency": "EUR"}
    direct = requests.post(f"{stack.url(c.TRANSACTIONS)}/transfers", json=body, headers=headers, timeout=10)
    assert direct.status_code == 401
    # Even a real service token does not let its holder name the customer: only the gateway can.
    as_gateway_without_assertion = requests.post(f"{stack.url(c.TRANSACTIONS)}/transfers", json=body, timeout=10,
                                                 headers={**headers, **service_headers(c.GATEWAY, c.TRANSACTIONS)})
    assert as_gateway_without_assertion.status_code == 401
    assert victim.balances()[victim_account] == "100.00"


def test_a_movement_posted_straight_to_accounts_skips_nothing_it_is_refused(stack, funded):
    victim, victim_account = funded
    thief = Customer(stack.url(c.GATEWAY))
    loot = thief.open_account()
    response = requests.post(f"{stack.url(c.ACCOUNTS)}/movements", json=movement(victim_account, loot), timeout=10)
    assert response.status_code == 401
    assert victim.balances()[victim_account] == "100.00"


def test_notifications_may_not_debit_an_account(stack, funded):
    customer, own = funded
    other = Customer(stack.url(c.GATEWAY)).open_account()
    headers = customer_headers(customer.id, c.NOTIFICATIONS, c.ACCOUNTS)
    response = requests.post(f"{stack.url(c.ACCOUNTS)}/movements", json=movement(own, other, amount_minor=100),
                             headers=headers, timeout=10)
    assert response.status_code == 403 and response.json()["error"] == "caller_not_allowed"
    assert customer.balances()[own] == "100.00"


def test_payments_may_not_ask_for_a_transfer_nor_transactions_for_a_refund(stack, funded):
    customer, own = funded
    other = Customer(stack.url(c.GATEWAY)).open_account()
    as_payments = customer_headers(customer.id, c.PAYMENTS, c.ACCOUNTS)
    transfer = requests.post(f"{stack.url(c.ACCOUNTS)}/movements", json=movement(own, other, amount_minor=100),
                             headers=as_payments, timeout=10)
    assert transfer.status_code == 403
    refund = movement(SETTLEMENT, own, kind="refund", amount_minor=100)
    as_transactions = service_headers(c.TRANSACTIONS, c.ACCOUNTS)
    assert requests.post(f"{stack.url(c.ACCOUNTS)}/movements", json=refund, headers=as_transactions,
                         timeout=10).status_code == 403


def test_payments_cannot_refund_money_that_was_never_paid(stack, funded):
    customer, own = funded
    refund = movement(SETTLEMENT, own, kind="refund", amount_minor=100_000)
    refund["id"] = f"pay_{uuid.uuid4().hex[:16]}-refund"
    response = requests.post(f"{stack.url(c.ACCOUNTS)}/movements", json=refund,
                             headers=service_headers(c.PAYMENTS, c.ACCOUNTS), timeout=10)
    assert response.status_code == 422 and response.json()["error"] == "refund_without_payment"
    assert customer.balances()[own] == "100.00"


def test_a_service_token_meant_for_one_service_is_useless_at_another(stack, funded):
    customer, own = funded
    # notifications receives transactions' tokens; it must not be able to replay one at accounts.
    stolen = Signer.load(c.TRANSACTIONS).service_token(c.NOTIFICATIONS)
    other = Customer(stack.url(c.GATEWAY)).open_account()
    headers = {c.HEADER_SERVICE_TOKEN: stolen,
               c.HEADER_CUSTOMER_ASSERTION: customer_headers(customer.id, c.GATEWAY, c.ACCOUNTS)[
                   c.HEADER_CUSTOMER_ASSERTION]}
    response = requests.post(f"{stack.url(c.ACCOUNTS)}/movements", json=movement(own, other, amount_minor=100),
                             headers=headers, timeout=10)
    assert response.status_code == 401 and response.json()["error"] == "invalid_service_token"


def test_a_customer_assertion_signed_by_anyone_but_the_gateway_is_refused(stack, funded):
    customer, own = funded
    transactions = Signer.load(c.TRANSACTIONS)
    forged = transactions.customer_assertion(customer.id)   # right shape, wrong signer
    headers = {**service_headers(c.TRANSACTIONS, c.ACCOUNTS), c.HEADER_CUSTOMER_ASSERTION: forged}
    response = requests.get(f"{stack.url(c.ACCOUNTS)}/accounts/{own}", headers=headers, timeout=10)
    assert response.status_code == 401 and response.json()["error"] == "invalid_customer_assertion"


def test_a_token_signed_with_a_key_the_lab_never_issued_is_refused(stack):
    impostor = Signer(c.TRANSACTIONS, Ed25519PrivateKey.generate())
    response = requests.post(f"{stack.url(c.FRAUD)}/assessments", json={}, headers=impostor.headers(c.FRAUD),
                             timeout=10)
    assert response.status_code == 401 and response.json()["error"] == "invalid_service_token"


def test_a_long_lived_service_token_is_refused_whatever_its_signature(stack):
    from cryptography.hazmat.primitives import serialization

    key_path = secrets.secrets_dir() / secrets.private_key_file(c.TRANSACTIONS)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    now = int(time.time())
    token = jwt.encode({"iss": c.TRANSACTIONS, "sub": c.TRANSACTIONS, "aud": c.FRAUD, "typ": "service",
                        "iat": now, "nbf": now, "exp": now + 7 * 24 * 3600}, key, algorithm="EdDSA",
                       headers={"kid": c.TRANSACTIONS})
    response = requests.post(f"{stack.url(c.FRAUD)}/assessments", json={},
                             headers={c.HEADER_SERVICE_TOKEN: token}, timeout=10)
    assert response.status_code == 401


def test_a_refused_internal_call_tells_the_customer_nothing_about_the_topology(stack, funded, monkeypatch):
    """Should the gateway's own credentials ever be refused (a broken deployment), the customer
    gets a plain 502, not which service refused whom."""
    customer, own = funded
    gateway = stack.app(c.GATEWAY).extensions["obslab"]
    monkeypatch.setattr(gateway.peer(c.ACCOUNTS), "signer", Signer(c.GATEWAY, Ed25519PrivateKey.generate()))
    response = customer.session.get(f"{customer.gateway}/accounts", timeout=10)
    assert response.status_code == 502 and response.json()["error"] == "dependency_error"
    assert "token" not in response.text and "gateway" not in response.text


def test_a_customer_access_token_opens_no_internal_endpoint(stack, funded):
    customer, own = funded
    response = requests.get(f"{stack.url(c.ACCOUNTS)}/accounts/{own}", timeout=10,
                            headers={"Authorization": f"Bearer {customer.token}"})
    assert response.status_code == 401


# --- the edge ---------------------------------------------------------------------------------------


def test_a_path_parameter_cannot_smuggle_a_query_to_an_internal_service(stack, funded):
    victim, victim_account = funded
    thief = Customer(stack.url(c.GATEWAY))
    smuggled = f"{victim_account}%3Fowner={victim.id}%26x="
    response = thief.session.get(f"{thief.gateway}/accounts/{smuggled}", timeout=10)
    assert response.status_code == 404 and victim_account not in response.text
    for path in (f"/transfers/trf_{'a' * 16}%2F..%2F", f"/payments/pay_x%3Fa=b", "/accounts/acc_..%2Fx"):
        assert thief.session.get(f"{thief.gateway}{path}", timeout=10).status_code == 404


LIMIT_RPS, LIMIT_BURST = 1, 10


@pytest.fixture
def limited_gateway(stack, tmp_path, monkeypatch):
    """A gateway with a tight per-client rate limit (the module's stack runs without one): 400
    requests take a second or several, and each client gets about a tenth of them through."""
    monkeypatch.setenv(settings.RATE_LIMIT_RPS.name, str(LIMIT_RPS))
    monkeypatch.setenv(settings.RATE_LIMIT_BURST.name, str(LIMIT_BURST))
    gateway = stack.own_gateway(tmp_path)
    yield gateway.url
    gateway.stop()


def _hammer(gateway: str, headers_for) -> tuple[int, float]:
    """400 cheap requests (a method the route refuses, so no service behind is called), each with
    its own X-Forwarded-For; returns how many were rate-limited and how long they took."""
    session = requests.Session()
    limited, started = 0, time.monotonic()
    for i in range(400):
        response = session.get(f"{gateway}/api/v1/auth/login", headers=headers_for(f"198.51.100.{i % 250}"),
                               timeout=10)
        limited += response.status_code == 429
    return limited, time.monotonic() - started


def test_rotating_x_forwarded_for_does_not_dodge_the_rate_limit(limited_gateway):
    limited, seconds = _hammer(limited_gateway, lambda address: {c.HEADER_FORWARDED_FOR: address})
    # One client: its burst, then its rate; whatever the machine's speed.
    allowed_at_most = LIMIT_BURST + LIMIT_RPS * seconds + 1
    assert 400 - limited <= allowed_at_most, (limited, seconds)


def test_only_the_load_generator_may_say_which_client_sent_a_request(limited_gateway):
    """The lab's own load generator simulates the internet: with its service token the gateway
    believes its X-Forwarded-For, so its 250 simulated clients are not one rate-limited address."""
    limited, _ = _hammer(limited_gateway, lambda address: {
        **service_headers(c.LOAD_GENERATOR, c.GATEWAY), c.HEADER_FORWARDED_FOR: address})
    assert limited == 0


def test_a_recipient_does_not_see_the_senders_refused_attempts_nor_the_senders_account(stack, funded):
    sender, source = funded
    recipient = Customer(stack.url(c.GATEWAY))
    target = recipient.open_account()
    refused = sender.transfer(source, target, "5000.00")           # insufficient funds
    assert refused.status_code == 422
    assert sender.transfer(source, target, "10.00").status_code == 201
    history = recipient.session.get(f"{recipient.gateway}/transfers", params={"account": target}, timeout=10)
    assert history.status_code == 200, history.text
    seen = history.json()
    assert [t["status"] for t in seen] == ["completed"]
    assert source not in history.text and seen[0]["from_account"].endswith(source[-4:])
    assert seen[0]["error"] is None and seen[0]["risk_score"] is None
    own = sender.session.get(f"{sender.gateway}/transfers", params={"account": source}, timeout=10).json()
    assert {t["status"] for t in own} == {"rejected", "completed"}


@pytest.mark.parametrize("service", [c.GATEWAY, c.AUTH, c.ACCOUNTS, c.TRANSACTIONS, c.PAYMENTS, c.FRAUD,
                                     c.NOTIFICATIONS])
def test_an_oversized_body_is_a_413_with_a_json_error_on_every_service(stack, service):
    path = {c.GATEWAY: "/api/v1/auth/login", c.AUTH: "/tokens", c.ACCOUNTS: "/deposits",
            c.TRANSACTIONS: "/transfers", c.PAYMENTS: "/payments", c.FRAUD: "/assessments",
            c.NOTIFICATIONS: "/notifications"}[service]
    caller = {c.AUTH: c.GATEWAY, c.ACCOUNTS: topology.OPERATOR, c.TRANSACTIONS: c.GATEWAY, c.PAYMENTS: c.GATEWAY,
              c.FRAUD: c.TRANSACTIONS, c.NOTIFICATIONS: c.TRANSACTIONS}.get(service)
    headers = {"Content-Type": "application/json", c.HEADER_IDEMPOTENCY_KEY: "k"}
    if caller:
        headers.update(customer_headers(f"cus_{'0' * 16}", caller, service))
    body = b'{"username": "' + b"x" * 200_000 + b'"}'
    response = requests.post(f"{stack.url(service)}{path}", data=body, headers=headers, timeout=10)
    assert response.status_code == 413, response.text[:200]
    assert response.headers["Content-Type"].startswith("application/json") and response.json()["error"]


def test_the_books_check_catches_money_taken_from_the_bank_even_when_the_sum_stays_zero(tmp_path):
    """What today's hole wrote (a 'transfer' from the settlement account into a customer's) keeps
    every balance summing to zero; the movement rules still see it."""
    from sqlalchemy import insert, update

    from obslab.platform.db import Database
    from obslab.services.accounts import ledger as books

    db = Database(c.ACCOUNTS, books.metadata, f"sqlite:///{tmp_path / 'accounts.sqlite3'}")
    ledger = books.Ledger(db)
    settlement = ledger.ensure_system_account(money.SYSTEM_ACCOUNT_SETTLEMENT, "EUR")
    own = ledger.open_account("cus_0000000000thief", "checking", "EUR")["id"]
    assert ledger.invariant_violations() == []

    def steal(conn) -> None:
        conn.execute(insert(books.movements).values(id="trf_stolen", kind="transfer", debit_account=settlement,
                                                    credit_account=own, amount_minor=100_000_000, currency="EUR",
                                                    created_ms=1))
        for account, amount in ((settlement, -100_000_000), (own, 100_000_000)):
            conn.execute(update(books.accounts).where(books.accounts.c.id == account)
                         .values(balance_minor=books.accounts.c.balance_minor + amount))
            conn.execute(insert(books.entries).values(movement_id="trf_stolen", account_id=account,
                                                      amount_minor=amount, balance_after_minor=amount, created_ms=1))

    db.run(steal)
    assert ledger.total_balance() == 0
    violations = ledger.invariant_violations()
    assert violations and "trf_stolen" in violations[0] and settlement in violations[0]


def test_the_books_check_catches_a_customer_debiting_another_customers_account(tmp_path):
    """Were the ledger's ownership check ever lost, the end-of-run check would still see it: each
    customer movement records who asked for it."""
    from obslab.platform.db import Database
    from obslab.services.accounts import ledger as books

    db = Database(c.ACCOUNTS, books.metadata, f"sqlite:///{tmp_path / 'accounts.sqlite3'}")
    ledger = books.Ledger(db)
    victim = ledger.open_account("cus_00000000victim", "checking", "EUR")["id"]
    thief = ledger.open_account("cus_000000000thief", "checking", "EUR")["id"]
    ledger.apply("dep-1", books.MovementKind.DEPOSIT, ledger.ensure_system_account(money.SYSTEM_ACCOUNT_CASH, "EUR"),
                 victim, 5_000, "EUR", None)
    ledger.apply("trf-1", books.MovementKind.TRANSFER, victim, thief, 1_000, "EUR", "cus_00000000victim")
    assert ledger.invariant_violations() == []
    db.run(lambda conn: conn.execute(books.movement_actors.update().values(customer_id="cus_000000000thief")))
    violations = ledger.invariant_violations()
    assert len(violations) == 1 and "trf-1" in violations[0] and "cus_000000000thief" in violations[0]
