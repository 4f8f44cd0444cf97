"""Attacks through the real service stack: the seven services in this process on real HTTP
(SQLite), once per module."""

from __future__ import annotations

import pytest

from tests.support import start_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    directory = tmp_path_factory.mktemp("security-stack")
    running = start_stack(lambda service: f"sqlite:///{directory / f'{service}.sqlite3'}")
    running.db_kind = "sqlite"
    yield running
    # Whatever the module did, the books must still be sound: conservation cannot see money taken
    # from the bank's own accounts, these rules can (services/accounts/ledger.py).
    violations = running.ledger_violations()
    running.stop()
    assert violations == [], violations


@pytest.fixture
def gateway(stack) -> str:
    return stack.url("gateway")
