"""The simulated customers: created once, idempotently, and kept logged in.

Setting a customer up is safe to repeat (a restarted generator, a lab started twice): a taken
username is fine as long as the password still works, accounts are opened only when missing,
and opening deposits carry fixed ids that the ledger applies once. Setup waits for a gateway
that is still starting, so the generator can start with the lab.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from obslab import conventions as c
from obslab.services.common.money import to_minor
from obslab.services.loadgen.identities import UserIdentity
from obslab.services.loadgen.transport import HttpClient, Reply, TransportError

log = logging.getLogger(__name__)

CURRENCY = "EUR"
# Log in again this long before the token expires, so no request carries a token about to lapse.
TOKEN_MARGIN_SECONDS = 60.0
SETUP_STEPS = ("setup_register", "setup_login", "setup_accounts", "setup_open_account", "setup_deposit")
DEPOSIT_STEP = "salary_deposit"


class SetupFailed(Exception):
    """A customer cannot be used (e.g. its username exists with another password)."""


class NotReady(Exception):
    """The gateway or a service behind it is not answering yet; try again later."""


@dataclass
class User:
    identity: UserIdentity
    accounts: dict[str, str] = field(default_factory=dict)      # type -> account id
    token: str | None = None
    token_expires: float = 0.0
    last_top_up: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def username(self) -> str:
        return self.identity.username

    def token_valid(self, now: float) -> bool:
        return self.token is not None and now < self.token_expires - TOKEN_MARGIN_SECONDS

    def remember_token(self, body: dict, now: float) -> None:
        self.token = body["access_token"]
        self.token_expires = now + float(body.get("expires_in", 900))

    def forget_token(self) -> None:
        self.token = None


def headers_for(address: str, user_agent: str, token: str | None = None) -> dict[str, str]:
    headers = {c.HEADER_FORWARDED_FOR: address, "User-Agent": user_agent}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def opening_deposit_id(username: str, account_type: str) -> str:
    return f"loadgen-opening-{username}-{account_type}"



class Provisioner:
    """Sets customers up through the gateway (and funds them through the accounts service)."""

    def __init__(self, gateway: HttpClient, accounts: HttpClient, password: str,
                 record: Callable[[str, str, float], None], clock: Callable[[], float] = time.time) -> None:
        self.gateway = gateway
        self.accounts = accounts
        self.password = password
        self.record = record
        self.clock = clock

    def _send(self, client: HttpClient, step: str, method: str, path: str, payload=None,
              headers: dict[str, str] | None = None) -> Reply:
        try:
            reply = client.request_json(method, path, payload, headers=headers)
        except TransportError as exc:
            self.record(step, exc.outcome, exc.seconds)
            raise NotReady(f"{step}: {exc}") from None
        self.record(step, reply.outcome, reply.seconds)
        if reply.status >= 500 or reply.status == 429:
            raise NotReady(f"{step}: HTTP {reply.status} {reply.error_code() or ''}".strip())
        return reply

    def setup(self, identity: UserIdentity) -> User:
        user = User(identity)
        headers = headers_for(identity.addresses[0], identity.user_agent)
        credentials = {"username": identity.username, "password": self.password}
        registered = self._send(self.gateway, "setup_register", "POST", f"{c.API_PREFIX}/auth/register", credentials, headers)
        if registered.status not in (201, 409):
            raise SetupFailed(f"register {identity.username}: HTTP {registered.status} {registered.error_code()}")
        login = self._send(self.gateway, "setup_login", "POST", f"{c.API_PREFIX}/auth/login", credentials, headers)
        if login.status != 200:
            raise SetupFailed(f"log in as {identity.username}: HTTP {login.status} {login.error_code()} "
                              "(was it registered earlier with another password?)")
        user.remember_token(login.json(), self.clock())
        authorized = headers_for(identity.addresses[0], identity.user_agent, user.token)
        listed = self._send(self.gateway, "setup_accounts", "GET", f"{c.API_PREFIX}/accounts", headers=authorized)
        if listed.status != 200:
            raise SetupFailed(f"list accounts of {identity.username}: HTTP {listed.status}")
        for account in listed.json() or []:
            if account.get("currency") == CURRENCY:
                user.accounts.setdefault(account.get("type", "checking"), account["id"])
        wanted: list[tuple[str, Decimal]] = [("checking", identity.opening_checking)]
        if identity.has_savings:
            wanted.append(("savings", identity.opening_savings))
        for account_type, opening in wanted:
            if account_type not in user.accounts:
                opened = self._send(self.gateway, "setup_open_account", "POST", f"{c.API_PREFIX}/accounts",
                                    {"currency": CURRENCY, "type": account_type}, authorized)
                if opened.status != 201:
                    raise SetupFailed(f"open {account_type} for {identity.username}: HTTP {opened.status}")
                user.accounts[account_type] = opened.json()["id"]
            self.deposit(user.accounts[account_type], opening, opening_deposit_id(identity.username, account_type),
                         step="setup_deposit")
        return user

    def deposit(self, account: str, amount: Decimal, movement_id: str | None = None,
                step: str = DEPOSIT_STEP) -> Reply:
        """Credit ``account`` from the bank's cash account (the accounts service's internal c.API_PREFIX)."""
        reply = self._send(self.accounts, step, "POST", "/deposits", {
            "id": movement_id or f"loadgen-salary-{uuid.uuid4().hex[:16]}", "account": account,
            "amount_minor": to_minor(amount), "currency": CURRENCY,
        })
        if reply.status not in (200, 201):
            raise SetupFailed(f"deposit into {account}: HTTP {reply.status} {reply.error_code()}")
        return reply


class Population:
    """The customers that are ready, and a background setup of the others."""

    def __init__(self, identities: list[UserIdentity], provisioner: Provisioner, *, threads: int = 4,
                 on_ready: Callable[[User], None] | None = None) -> None:
        self.identities = identities
        self.provisioner = provisioner
        self.threads = max(1, min(threads, len(identities)))
        self.on_ready = on_ready
        self.ready: list[User] = []
        self.failed: dict[str, str] = {}
        self.last_error: str | None = None
        self._pending = list(reversed(identities))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.done = threading.Event()

    def start(self) -> None:
        for i in range(self.threads):
            thread = threading.Thread(target=self._work, name=f"loadgen-setup-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    @property
    def settled(self) -> int:
        return len(self.ready) + len(self.failed)

    def _next(self) -> UserIdentity | None:
        with self._lock:
            return self._pending.pop() if self._pending else None

    def _work(self) -> None:
        try:
            self._set_up_until_done()
        finally:
            self.provisioner.gateway.close()
            self.provisioner.accounts.close()

    def _set_up_until_done(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            identity = self._next()
            if identity is None:
                break
            while not self._stop.is_set():
                try:
                    user = self.provisioner.setup(identity)
                except NotReady as exc:
                    if self.last_error is None:
                        log.warning("gateway not ready for customer setup; retrying", extra={"error": str(exc)})
                    self.last_error = str(exc)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                except SetupFailed as exc:
                    log.warning("simulated customer left out", extra={"username": identity.username,
                                                                      "error": str(exc)})
                    with self._lock:
                        self.failed[identity.username] = str(exc)
                    break
                backoff = 0.5
                self.last_error = None
                with self._lock:
                    self.ready.append(user)
                if self.on_ready is not None:
                    self.on_ready(user)
                break
        with self._lock:
            finished = not self._pending and self.settled == len(self.identities)
        if finished:
            self.done.set()

    def snapshot(self) -> list[User]:
        with self._lock:
            return list(self.ready)

