"""The issue's backup scenario on a running native lab (tests/integration/test_native_lab.py runs
it on its lab, so that it costs no lab start of its own): transfers running while a backup is
taken, then more transfers, a fault and a page; the archive restored into a fresh directory and
started with `up` beside the first lab, whose API, Prometheus and stores answer with what was
there at the backup."""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import requests

from obslab import conventions as c
from obslab import secrets
from obslab.lab import backup
from obslab.platform.db import Database
from obslab.services.accounts.ledger import Ledger
from obslab.services.accounts.ledger import metadata as ledger_metadata
from obslab.services.alert_receiver import store as receiver_store
from obslab.services.common import money
from obslab.services.fault_injector import app as injector
from tests.integration.lab import RunningLab, eventually, free_offset, obslab, start_lab

PAGE = {
    "version": "4", "truncatedAlerts": 0, "status": "firing", "receiver": "pager",
    "groupLabels": {"alertname": "BankingServiceDown"},
    "commonLabels": {"alertname": "BankingServiceDown", "severity": "critical", "service": "payments"},
    "commonAnnotations": {}, "externalURL": "http://localhost:9093",
    "alerts": [{"status": "firing",
                "labels": {"alertname": "BankingServiceDown", "severity": "critical", "service": "payments",
                           "team": "core-banking"},
                "annotations": {"summary": "payments is down", "description": ""},
                "startsAt": "2026-11-23T10:15:02.114Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://localhost:9090/graph", "fingerprint": "0123456789abcdef"}],
}


def _operator(lab) -> dict[str, str]:
    """The operator's control token, from the lab's data directory (what `obslab fault` sends)."""
    return {"Authorization": f"Bearer {secrets.control_token(directory=secrets.secrets_dir(lab.data_dir))}"}


def _notify(lab, marker: str) -> None:
    """A notification the alert-receiver stores, posted as the operator (as Alertmanager posts)."""
    body = copy.deepcopy(PAGE)
    body["groupKey"] = f"{{}}:{{marker=\"{marker}\"}}"
    body["alerts"][0]["annotations"]["description"] = marker
    response = requests.post(f"{lab.url(c.ALERT_RECEIVER)}/webhook/pager", json=body, timeout=10,
                             headers=_operator(lab))
    assert response.status_code in (200, 201), response.text


def _restored_notification_markers(data_dir: Path) -> set[str]:
    """What the alert-receiver of the restored directory would show, read through its own store."""
    db = Database(c.ALERT_RECEIVER, receiver_store.metadata, f"sqlite:///{data_dir / 'db' / 'alert-receiver.sqlite3'}")
    try:
        notifications = receiver_store.NotificationStore(db).list(limit=1000)
    finally:
        db.engine.dispose()
    return {alert["description"] for item in notifications for alert in item["alerts"]}


def _restored_audited_faults(data_dir: Path) -> set[str]:
    """The fault injector's audit log in the restored directory, read through its own store."""
    db = Database(c.FAULT_INJECTOR, injector.metadata, f"sqlite:///{data_dir / 'db' / 'fault-injector.sqlite3'}")
    try:
        return {entry["fault_id"] for entry in injector.FaultStore(db, None).audit(1000)}
    finally:
        db.engine.dispose()


def _fault(lab) -> str:
    """A fault set and cleared (two lines in the audit log), through the control plane's API."""
    faults = f"{lab.url(c.FAULT_INJECTOR)}{c.API_PREFIX}/faults"
    response = requests.post(faults, headers=_operator(lab), timeout=10,
                             json={"kind": "latency", "target": c.FRAUD, "latency_ms": 1, "ttl_seconds": 300})
    assert response.status_code == 201, response.text
    fault_id = response.json()["id"]
    assert requests.delete(f"{faults}/{fault_id}", headers=_operator(lab), timeout=10).status_code == 200
    return fault_id


def _balances(sessions: dict[str, requests.Session], api: str) -> dict[str, str]:
    found = {}
    for name, session in sessions.items():
        response = session.get(f"{api}/accounts", timeout=10)
        assert response.status_code == 200, response.text
        found.update({f"{name}/{a['id']}": a["balance"] for a in response.json()})
    return found


def _transfer(session: requests.Session, api: str, source: str, target: str, amount: str) -> None:
    response = session.post(f"{api}/transfers", timeout=30, headers={"Idempotency-Key": uuid.uuid4().hex},
                            json={"from_account": source, "to_account": target, "amount": amount, "currency": "EUR"})
    assert response.status_code == 201, response.text


def _accounts(session: requests.Session, api: str) -> list[dict]:
    response = session.get(f"{api}/accounts", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _money_view(sessions: dict[str, requests.Session], api: str) -> dict[str, str]:
    """What the transfers running during the backup cannot change: alice's balance per account and
    bob's total (the background traffic moves money between bob's own two accounts)."""
    alice = {f"alice/{a['id']}": a["balance"] for a in _accounts(sessions["alice"], api)}
    bob = sum(money.to_minor(Decimal(a["balance"])) for a in _accounts(sessions["bob"], api))
    return {**alice, "bob/total": money.to_decimal_string(bob)}


class BobShuffles(threading.Thread):
    """Traffic while the backup runs: bob moves 0.01 between his checking and savings, over and over."""

    def __init__(self, session: requests.Session, api: str, accounts: tuple[str, str]) -> None:
        super().__init__(daemon=True)
        self.session, self.api, self.accounts = session, api, accounts
        self.stop = threading.Event()
        self.done = 0

    def run(self) -> None:
        source, target = self.accounts
        while not self.stop.is_set():
            _transfer(self.session, self.api, source, target, "0.01")
            source, target = target, source
            self.done += 1


def backup_round_trip(first: RunningLab, tmp_path: Path) -> None:
    archive = tmp_path / "lab.tar.gz"
    restored = tmp_path / "restored"
    sessions = {name: first.login(name) for name in ("alice", "bob")}
    alice_checking = _accounts(sessions["alice"], first.api)[0]["id"]
    bob_accounts = tuple(a["id"] for a in _accounts(sessions["bob"], first.api))[:2]
    for amount in ("12.34", "0.66", "100.00"):
        _transfer(sessions["alice"], first.api, alice_checking, bob_accounts[0], amount)
    fault_before = _fault(first)
    _notify(first, "before the backup")
    series = f'sum(transaction_requests_total{{type="{c.TransactionType.TRANSFER.value}"}})'
    eventually(lambda: (first.value(series) or 0) >= 3, 60, "the transfers scraped into Prometheus")
    before = time.time()
    time.sleep(1)
    seen_before = first.prometheus("/api/v1/query", query=series, time=before)["result"]
    up_before = first.prometheus("/api/v1/query", query=f'up{{job="{c.ACCOUNTS}"}}', time=before)["result"]

    traffic = BobShuffles(first.login("bob"), first.api, bob_accounts)
    traffic.start()
    try:
        eventually(lambda: traffic.done >= 3, 30, "transfers running")
        balances = _money_view(sessions, first.api)
        began = time.monotonic()
        made = first.run("backup", "create", "--out", str(archive), "--json", timeout=120)
        backup_seconds = time.monotonic() - began
        during = traffic.done
        eventually(lambda: traffic.done >= during + 2, 30, "transfers still running after the backup")
    finally:
        traffic.stop.set()
        traffic.join(timeout=30)
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    assert summary["ledger"]["sound"] and summary["ledger"]["movements"] > 4, summary
    assert summary["prometheus"]["method"] == "file-copy (running)"
    assert summary["write_pause_ms"] < 5000 and summary["secrets"] == "plaintext"

    # After the backup: money moves, a fault comes and goes, another page arrives.
    _transfer(sessions["alice"], first.api, alice_checking, bob_accounts[0], "7.00")
    assert _money_view(sessions, first.api) != balances
    fault_after = _fault(first)
    _notify(first, "after the backup")

    began = time.monotonic()
    done = obslab("backup", "restore", str(archive), "--data-dir", str(restored), "--json",
                  offset=first.offset, timeout=120)
    restore_seconds = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ledger"]["sound"]

    # What was restored, read where it lies.
    books_db = Database(c.ACCOUNTS, ledger_metadata, f"sqlite:///{restored / 'db' / 'accounts.sqlite3'}")
    try:
        assert Ledger(books_db).invariant_violations() == []
    finally:
        books_db.engine.dispose()
    ledger = backup.sqlite_ledger_summary(restored / "db" / "accounts.sqlite3")
    assert ledger["sound"] and ledger["sum_minor"] == 0 and ledger["half_movements"] == 0, ledger
    markers = _restored_notification_markers(restored)
    assert "before the backup" in markers and "after the backup" not in markers
    audited = _restored_audited_faults(restored)
    assert fault_before in audited and fault_after not in audited
    # One instant across services: every transfer transactions calls completed is in the ledger.
    books = sqlite3.connect(restored / "db" / "accounts.sqlite3")
    records = sqlite3.connect(restored / "db" / "transactions.sqlite3")
    try:
        moved = {row[0] for row in books.execute("SELECT id FROM movements")}
        completed = {row[0] for row in records.execute("SELECT id FROM transfers WHERE status = 'completed'")}
    finally:
        books.close()
        records.close()
    assert completed and completed <= moved, sorted(completed - moved)[:5]

    # `up` on the restored directory, beside the first lab: what it serves is what the lab held.
    second = start_lab(restored, free_offset(first.offset + 1000), "--no-traffic")
    try:
        again = {name: second.login(name) for name in ("alice", "bob")}
        assert _money_view(again, second.api) == balances                     # to the cent
        assert second.prometheus("/api/v1/query", query=series, time=before)["result"] == seen_before
        assert second.prometheus("/api/v1/query", query=f'up{{job="{c.ACCOUNTS}"}}',
                                 time=before)["result"] == up_before
        assert [sample["value"][1] for sample in up_before] == ["1"]
    finally:
        second.stop()
    print(f"backup {summary['size_bytes'] / 1e6:.1f} MB, written in {backup_seconds:.1f} s "
          f"(pause {summary['write_pause_ms']} ms) under {traffic.done} transfers; restored in {restore_seconds:.1f} s")
