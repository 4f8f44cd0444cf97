"""The whole service stack in this process, on real HTTP, once per module and database kind."""

from __future__ import annotations

import uuid

import pytest

from tests.support import MYSQL_SERVER_URL, Customer, deposit, drop_mysql_databases, mysql_reachable, start_stack


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def stack(request, tmp_path_factory):
    kind = request.param
    directory = tmp_path_factory.mktemp(f"stack-{kind}")
    created: list[str] = []
    run = uuid.uuid4().hex[:8]

    def db_url_for(service: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{directory / f'{service}.sqlite3'}"
        if not mysql_reachable():
            pytest.fail(f"MariaDB is not reachable at {MYSQL_SERVER_URL}; run `obslab doctor --install --mariadb`")
        name = f"obslabtest_{run}_{service}"
        created.append(name)
        return f"{MYSQL_SERVER_URL.rstrip('/')}/{name}"

    running = start_stack(db_url_for)
    running.db_kind = kind
    yield running
    # Whatever the module did, the books must still be sound: conservation cannot see money taken
    # from the bank's own accounts, these rules can (services/accounts/ledger.py).
    violations = running.ledger_violations()
    running.stop()
    drop_mysql_databases(created)
    assert violations == [], violations


@pytest.fixture
def gateway(stack) -> str:
    return stack.url("gateway")


@pytest.fixture
def funded(stack):
    """A new customer with a checking account holding 100.00 EUR, and a helper to make more."""

    def make(amount_minor: int = 10_000, currency: str = "EUR") -> tuple[Customer, str]:
        customer = Customer(stack.url("gateway"))
        account = customer.open_account(currency)
        deposit(stack.url("accounts"), account, amount_minor, currency)
        return customer, account

    return make


@pytest.fixture(scope="module")
def shared_customer(stack) -> Customer:
    """One customer per module, for tests that only need somebody logged in."""
    return Customer(stack.url("gateway"))
