"""Demo data: customers alice and bob, each with a checking and a savings account in EUR.

Safe to run any number of times: registration tolerates "username taken", accounts are opened
only when missing, and deposits carry fixed movement ids that the ledger applies once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from obslab import settings
from obslab.services.common.money import to_minor


@dataclass(frozen=True)
class DemoAccount:
    type: str
    opening_balance: Decimal


DEMO_CUSTOMERS: dict[str, tuple[DemoAccount, ...]] = {
    "alice": (DemoAccount("checking", Decimal("2500.00")), DemoAccount("savings", Decimal("10000.00"))),
    "bob": (DemoAccount("checking", Decimal("1200.00")), DemoAccount("savings", Decimal("5000.00"))),
}
CURRENCY = "EUR"


class SeedError(RuntimeError):
    pass


def demo_password() -> str:
    return settings.DEMO_PASSWORD.get()


def _check(response: requests.Response, what: str, *ok: int) -> dict | list:
    if response.status_code not in ok:
        raise SeedError(f"{what}: HTTP {response.status_code} {response.text[:200]}")
    return response.json()


def patient_session() -> requests.Session:
    """A session that waits out an overloaded lab: at start the load generator's customers
    register too, and auth answers 503 with Retry-After once its hashing slots are busy. Every
    step here is safe to repeat (a taken name is fine, deposits carry fixed ids)."""
    session = requests.Session()
    retry = Retry(total=10, connect=3, read=0, status=10, status_forcelist=(429, 502, 503, 504),
                  allowed_methods=None, backoff_factor=0.5, respect_retry_after_header=True, raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


def seed_demo_data(gateway_url: str, accounts_url: str, password: str | None = None,
                   timeout: float = 10.0, *, deposit_headers: Callable[[], dict[str, str]]) -> dict[str, list[dict]]:
    """Create the demo customers; returns each customer's accounts as the API shows them.

    ``deposit_headers``: the operator's credential for the accounts service's internal deposits."""
    password = password or demo_password()
    session = patient_session()
    result: dict[str, list[dict]] = {}
    for username, wanted in DEMO_CUSTOMERS.items():
        credentials = {"username": username, "password": password}
        _check(session.post(f"{gateway_url}/api/v1/auth/register", json=credentials, timeout=timeout),
               f"register {username}", 201, 409)
        login = _check(session.post(f"{gateway_url}/api/v1/auth/login", json=credentials, timeout=timeout),
                       f"log in as {username} (was the demo password changed since the first start?)", 200)
        headers = {"Authorization": f"Bearer {login['access_token']}"}
        accounts = _check(session.get(f"{gateway_url}/api/v1/accounts", headers=headers, timeout=timeout),
                          f"list accounts of {username}", 200)
        by_type = {a.get("type"): a for a in accounts}
        for demo in wanted:
            account = by_type.get(demo.type)
            if account is None:
                account = _check(session.post(f"{gateway_url}/api/v1/accounts", headers=headers, timeout=timeout,
                                              json={"currency": CURRENCY, "type": demo.type}),
                                 f"open {demo.type} account for {username}", 201)
            _check(session.post(f"{accounts_url}/deposits", timeout=timeout, headers=deposit_headers(), json={
                "id": f"seed-{username}-{demo.type}", "account": account["id"],
                "amount_minor": to_minor(demo.opening_balance), "currency": CURRENCY,
            }), f"opening deposit for {username}/{demo.type}", 200, 201)
        result[username] = _check(session.get(f"{gateway_url}/api/v1/accounts", headers=headers, timeout=timeout),
                                  f"list accounts of {username}", 200)
    return result
