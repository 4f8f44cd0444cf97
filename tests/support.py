"""Helpers shared by tests: real HTTP servers on loopback, a whole in-process stack, API calls."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy
import waitress
from flask import Flask
from waitress import wasyncore

from obslab import conventions as c
from obslab import secrets
from obslab import settings
from obslab import topology
from obslab.platform.serving import server_options

MYSQL_SERVER_URL = os.environ.get("OBSLAB_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")
PASSWORD = "correct horse battery staple"


def mysql_reachable() -> bool:
    url = sqlalchemy.engine.make_url(MYSQL_SERVER_URL)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 3306), timeout=1):
            return True
    except OSError:
        return False


def drop_mysql_databases(names: list[str]) -> None:
    if not names:
        return
    engine = sqlalchemy.create_engine(MYSQL_SERVER_URL)
    with engine.begin() as conn:
        for name in names:
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS `{name}`"))
    engine.dispose()


def required_binary(name: str) -> str:
    """The binary's path; CI must have it (`make test` installs it), a laptop may skip."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is missing: run `obslab doctor --install`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate a server the test started, killing it if it does not stop in ``timeout``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def free_port() -> int:
    """A free port for a server a test starts later, below the kernel's ephemeral range: port 0
    would hand out one from that range, which any outgoing connection may take before the server
    binds it."""
    from obslab.settings import EPHEMERAL_PORTS_START

    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, EPHEMERAL_PORTS_START)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass
class LiveServer:
    """A Flask app served over real HTTP on 127.0.0.1 by the server and settings `obslab serve`
    uses (waitress: whole requests buffered before a thread sees them, the same limits)."""

    app: Flask
    url: str
    _server: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.close()
        # waitress's loop runs while any connection is open: close the kept-alive ones too.
        wasyncore.close_all(self._server._map)
        self._thread.join(timeout=10)


def serve(app: Flask, port: int = 0) -> LiveServer:
    server = waitress.create_server(app, host="127.0.0.1", port=port, **server_options(app))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return LiveServer(app, f"http://127.0.0.1:{server.effective_port}", server, thread)


@dataclass
class Stack:
    """The seven services in this process, each on its own port and database."""

    servers: dict[str, LiveServer] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.servers[name].url

    def app(self, name: str) -> Flask:
        return self.servers[name].app

    def stop(self) -> None:
        # Together: each waitress loop notices within its one-second poll.
        stoppers = [threading.Thread(target=server.stop) for server in self.servers.values()]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()

    def gateway_in_front(self, db_url: str) -> LiveServer:
        """A gateway in front of this stack's services; its limits are read from the environment
        when it is built."""
        from obslab.services.gateway.app import create_app as gateway_app

        return serve(gateway_app(db_url, peer_urls={
            name: self.url(name) for name in (c.AUTH, c.ACCOUNTS, c.TRANSACTIONS, c.PAYMENTS)}))

    def own_gateway(self, directory: Path) -> LiveServer:
        """A gateway of its own, whatever limits the stack's gateway was built with."""
        return self.gateway_in_front(f"sqlite:///{directory / 'own-gateway.sqlite3'}")

    def ledger_violations(self) -> list[str]:
        """What in the accounts service's books no legitimate operation could have written."""
        from obslab.services.accounts.ledger import Ledger

        return Ledger(self.app(c.ACCOUNTS).extensions["obslab"].db).invariant_violations()


def start_stack(db_url_for: Callable[[str], str], processor=None) -> Stack:
    """The gateway's per-client rate limit is off: a test's requests all come from 127.0.0.1,
    and a module of quick refusals or a pool of parallel transfers would meet the limit before
    the answers it is about. Tests of the limit build a gateway of their own (``own_gateway``)."""
    from obslab.services.accounts.app import create_app as accounts_app
    from obslab.services.auth.app import create_app as auth_app
    from obslab.services.fraud.app import create_app as fraud_app
    from obslab.services.notifications.app import create_app as notifications_app
    from obslab.services.payments.app import create_app as payments_app
    from obslab.services.payments.processor import CardProcessor
    from obslab.services.transactions.app import create_app as transactions_app

    stack = Stack()
    for name, factory in ((c.AUTH, auth_app), (c.ACCOUNTS, accounts_app), (c.FRAUD, fraud_app),
                          (c.NOTIFICATIONS, notifications_app)):
        stack.servers[name] = serve(factory(db_url_for(name)))
    leaves = {name: stack.url(name) for name in (c.FRAUD, c.ACCOUNTS, c.NOTIFICATIONS)}
    stack.servers[c.TRANSACTIONS] = serve(transactions_app(db_url_for(c.TRANSACTIONS), peer_urls=leaves))
    stack.servers[c.PAYMENTS] = serve(payments_app(
        db_url_for(c.PAYMENTS), peer_urls=leaves,
        processor=processor or CardProcessor(median_ms=5, decline_rate=0.0),
    ))
    with pytest.MonkeyPatch.context() as env:
        env.setenv(settings.RATE_LIMIT_RPS.name, "0")
        stack.servers[c.GATEWAY] = stack.gateway_in_front(db_url_for(c.GATEWAY))
    return stack


class Customer:
    """A registered, logged-in customer talking to the gateway's public API."""

    def __init__(self, gateway: str, username: str | None = None) -> None:
        self.gateway = gateway.rstrip("/") + c.API_PREFIX
        self.username = username or f"u{uuid.uuid4().hex[:10]}"
        self.session = requests.Session()
        registered = self.session.post(f"{self.gateway}/auth/register",
                                       json={"username": self.username, "password": PASSWORD}, timeout=10)
        assert registered.status_code == 201, registered.text
        self.id = registered.json()["id"]
        login = self.session.post(f"{self.gateway}/auth/login",
                                  json={"username": self.username, "password": PASSWORD}, timeout=10)
        assert login.status_code == 200, login.text
        self.token = login.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def open_account(self, currency: str = "EUR", type_: str = "checking") -> str:
        response = self.session.post(f"{self.gateway}/accounts", json={"currency": currency, "type": type_},
                                     timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def balances(self) -> dict[str, str]:
        response = self.session.get(f"{self.gateway}/accounts", timeout=10)
        assert response.status_code == 200, response.text
        return {a["id"]: a["balance"] for a in response.json()}

    def transfer(self, from_account: str, to_account: str, amount: str, key: str | None = None,
                 currency: str = "EUR") -> requests.Response:
        return self.session.post(
            f"{self.gateway}/transfers",
            json={"from_account": from_account, "to_account": to_account, "amount": amount, "currency": currency},
            headers={c.HEADER_IDEMPOTENCY_KEY: key or uuid.uuid4().hex}, timeout=30,
        )

    def pay(self, account: str, merchant: str, amount: str, key: str | None = None,
            currency: str = "EUR") -> requests.Response:
        return self.session.post(
            f"{self.gateway}/payments",
            json={"account": account, "merchant": merchant, "amount": amount, "currency": currency},
            headers={c.HEADER_IDEMPOTENCY_KEY: key or uuid.uuid4().hex}, timeout=30,
        )


_signers: dict[str, Any] = {}


def service_headers(caller: str, audience: str) -> dict[str, str]:
    """What ``caller`` sends to ``audience``: its signed service token (the lab's test keys)."""
    from obslab.platform.identity import Signer

    if caller not in _signers:
        _signers[caller] = Signer.load(caller)
    return _signers[caller].headers(audience)


def customer_headers(customer_id: str, caller: str, audience: str) -> dict[str, str]:
    """``caller``'s service token plus the gateway's assertion for ``customer_id``."""
    from obslab.platform.identity import Signer

    if c.GATEWAY not in _signers:
        _signers[c.GATEWAY] = Signer.load(c.GATEWAY)
    return {**service_headers(caller, audience),
            c.HEADER_CUSTOMER_ASSERTION: _signers[c.GATEWAY].customer_assertion(customer_id)}


def control_headers(principal: str = topology.OPERATOR) -> dict[str, str]:
    """The control plane's bearer token of ``principal`` (the lab's test secrets)."""
    return {"Authorization": f"Bearer {secrets.control_token(principal)}"}


def operator_session() -> requests.Session:
    """A session that drives the control plane as the operator (what `obslab fault ...` does)."""
    session = requests.Session()
    session.headers.update(control_headers())
    return session


def deposit(accounts_url: str, account: str, amount_minor: int, currency: str = "EUR") -> None:
    response = requests.post(f"{accounts_url}/deposits", json={
        "id": f"test-deposit-{uuid.uuid4().hex[:12]}", "account": account,
        "amount_minor": amount_minor, "currency": currency,
    }, headers=service_headers(topology.OPERATOR, c.ACCOUNTS), timeout=10)
    assert response.status_code == 201, response.text
