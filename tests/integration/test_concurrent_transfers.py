"""Many parallel transfers between a few accounts, on SQLite and on MariaDB.

Money is conserved, no balance goes negative, each account's balance equals the sum of its
ledger lines, and duplicates sent concurrently under one Idempotency-Key move money once.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from obslab.services.accounts.ledger import Ledger, accounts, entries, movements
from tests.support import Customer, deposit, start_stack

TRANSFERS = 240
DUPLICATED_KEYS = 15
COPIES_PER_KEY = 4
THREADS = 16


@pytest.fixture
def world(db_url_for, monkeypatch):
    # The subject is money under contention, not latency: sixteen parallel transfers through
    # SQLite's one writer can keep a call waiting longer than the 5 s default between services
    # (two 504s in two clean-clone runs on 2 cores), so calls wait as long as SQLite's 30 s busy
    # timeout lets a statement wait.
    monkeypatch.setenv("OBSLAB_HTTP_TIMEOUT_SECONDS", "30")
    stack = start_stack(db_url_for)
    customers = [Customer(stack.url("gateway")) for _ in range(2)]
    owned = {}
    for customer in customers:
        for _ in range(2):
            account = customer.open_account()
            deposit(stack.url("accounts"), account, 10_000)
            owned[account] = customer
    yield stack, owned
    stack.stop()


def test_parallel_transfers_conserve_money_and_duplicates_move_it_once(world):
    stack, owned = world
    account_ids = list(owned)
    rng = random.Random(7)

    def one(job):
        source, target, amount, key = job
        response = owned[source].transfer(source, target, amount, key=key)
        return key, response.status_code, response.json()

    jobs = []
    for _ in range(TRANSFERS):
        source, target = rng.sample(account_ids, 2)
        jobs.append((source, target, f"{rng.randint(100, 6000) / 100:.2f}", uuid.uuid4().hex))
    duplicated = []
    for _ in range(DUPLICATED_KEYS):
        source, target = rng.sample(account_ids, 2)
        job = (source, target, f"{rng.randint(100, 3000) / 100:.2f}", f"dup-{uuid.uuid4().hex}")
        duplicated.append(job[3])
        jobs.extend([job] * COPIES_PER_KEY)
    rng.shuffle(jobs)

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(one, jobs))

    statuses = Counter(status for _, status, _ in results)
    unexpected = [(status, body) for _, status, body in results if status not in (201, 409, 422)]
    assert not unexpected, unexpected[:5]  # no 5xx under contention
    assert statuses[201] > 50 and statuses[422] > 0, statuses  # real contention on the funds check

    completed_ids = {body["id"] for _, status, body in results if status == 201}
    for key in duplicated:
        ids = {body["id"] for k, status, body in results if k == key and status == 201}
        assert len(ids) <= 1, f"key {key} created {len(ids)} transfers"

    balances = {}
    for customer in {id(c): c for c in owned.values()}.values():
        balances.update(customer.balances())
    assert sum(Decimal(v) for v in balances.values()) == Decimal("400.00")
    assert all(Decimal(v) >= 0 for v in balances.values()), balances

    db = stack.app("accounts").extensions["obslab"].db
    with db.connect() as conn:
        moved = conn.execute(select(movements.c.id).where(movements.c.kind == "transfer")).scalars().all()
        assert sorted(moved) == sorted(completed_ids)
        per_account = dict(conn.execute(
            select(entries.c.account_id, func.sum(entries.c.amount_minor)).group_by(entries.c.account_id)).all())
        stored = dict(conn.execute(select(accounts.c.id, accounts.c.balance_minor)).all())
    for account_id, balance in stored.items():
        assert balance == (per_account.get(account_id) or 0), account_id
    assert Ledger(db).total_balance() == 0
