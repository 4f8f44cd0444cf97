"""User journeys: what a customer does in one session, step by step, with think times between.

A journey is a generator: it sends a step's request(s), then ``yield``s the seconds the
customer thinks before the next step, and finally ``return``s its outcome. The generator's
workers run a step and put the journey aside while the customer thinks, so a thinking customer
holds no thread and the number of workers bounds only the requests in flight.

Money is never a float: amounts are drawn in whole cents and sent as decimal strings.

Each journey is also a funnel (:data:`JOURNEY_FUNNELS`): a run counts each step it reaches once,
when the step's first request is sent, and ends completed (``ok``), abandoned (``abandoned``: the
customer gives up, e.g. after a failed login, or has nothing to transfer or pay from; ``rejected``:
the bank refused the money movement) or failed (``rate_limited``, ``error``); see
:mod:`obslab.services.loadgen.recorder`.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from obslab import conventions as c
from obslab.services.loadgen import mix
from obslab.services.loadgen.config import LoadConfig
from obslab.services.loadgen.identities import CUSTOMER_RANGES, USER_AGENTS
from obslab.services.loadgen.population import CURRENCY, NotReady, Provisioner, SetupFailed, User, headers_for
from obslab.conventions.loadgen import (
    JOURNEY_ABANDONED,
    JOURNEY_ERROR,
    JOURNEY_OK,
    JOURNEY_RATE_LIMITED,
    JOURNEY_REJECTED,
)
from obslab.services.loadgen.recorder import Recorder
from obslab.services.loadgen.transport import HttpClient, Reply, TransportError

log = logging.getLogger(__name__)

Journey = Generator[float, None, str]

# Steps (the ``step`` label of the request metrics).
LOGIN = "login"
LIST_ACCOUNTS = "list_accounts"
GET_ACCOUNT = "get_account"
LIST_TRANSFERS = "list_transfers"
GET_TRANSFER = "get_transfer"
TRANSFER = "transfer"
TRANSFER_RETRY = "transfer_retry"
PAYMENT = "payment"
FAILED_LOGIN = "failed_login"
REGISTER = "register"
OPEN_ACCOUNT = "open_account"
JOURNEY_STEPS = (LOGIN, LIST_ACCOUNTS, GET_ACCOUNT, LIST_TRANSFERS, GET_TRANSFER, TRANSFER, TRANSFER_RETRY,
                 PAYMENT, FAILED_LOGIN, REGISTER, OPEN_ACCOUNT)
# Each journey's steps in the order its runs reach them: a run reaches a prefix of its funnel (it
# ends or stops early, never skips a step), so each step counts at least as often as the next.
JOURNEY_FUNNELS: dict[str, tuple[str, ...]] = {
    mix.CHECK_BALANCES: (LOGIN, LIST_ACCOUNTS, GET_ACCOUNT),
    mix.HISTORY: (LOGIN, LIST_ACCOUNTS, LIST_TRANSFERS, GET_TRANSFER),
    mix.TRANSFER: (LOGIN, LIST_ACCOUNTS, TRANSFER, TRANSFER_RETRY),
    mix.PAY: (LOGIN, LIST_ACCOUNTS, PAYMENT),
    mix.FAILED_LOGIN: (FAILED_LOGIN, LOGIN, LIST_ACCOUNTS),
    mix.REGISTER: (REGISTER, LOGIN, OPEN_ACCOUNT, LIST_ACCOUNTS),
}

# Shares inside the money journeys (realism, not stress: mistakes are rare).
DELIBERATE_OVERDRAFT_SHARE = 0.015   # a transfer of more than the balance: 422 insufficient_funds
UNKNOWN_PAYEE_SHARE = 0.005          # a mistyped payee account: refused as not found
OWN_SAVINGS_SHARE = 0.35             # of transfers from checking: to the customer's own savings
FROM_SAVINGS_SHARE = 0.10            # of transfers: savings back to checking
LOW_BALANCE = Decimal("150.00")      # below it a salary arrives (at most every TOP_UP_EVERY seconds)
TOP_UP_EVERY = 600.0
REFUSALS = (404, 409, 422)           # final business answers of a money movement


@dataclass(frozen=True)
class Merchant:
    name: str
    median: Decimal
    sigma: float
    weight: float


MERCHANTS: tuple[Merchant, ...] = (
    Merchant("Lidl", Decimal("32"), 0.6, 14),
    Merchant("REWE", Decimal("45"), 0.6, 10),
    Merchant("Carrefour", Decimal("52"), 0.6, 8),
    Merchant("Spotify", Decimal("10.99"), 0.05, 5),
    Merchant("Netflix", Decimal("13.99"), 0.05, 5),
    Merchant("City Power & Light", Decimal("85"), 0.35, 6),
    Merchant("Vodafone", Decimal("39.99"), 0.2, 6),
    Merchant("Municipal Water", Decimal("31"), 0.3, 4),
    Merchant("Shell", Decimal("62"), 0.4, 8),
    Merchant("Deutsche Bahn", Decimal("48"), 0.8, 6),
    Merchant("Amazon", Decimal("38"), 1.0, 14),
    Merchant("IKEA", Decimal("120"), 0.9, 3),
    Merchant("LuckyStar Casino", Decimal("50"), 0.8, 0.5),   # the fraud rules' high-risk category
)
_MERCHANT_WEIGHTS = [m.weight for m in MERCHANTS]


def _cents(value: float) -> Decimal:
    return Decimal(max(1, int(value * 100))).scaleb(-2)


def transfer_amount(rng: random.Random) -> Decimal:
    """Mostly small (median 40), now and then a few thousand: log-normal, capped at 5000.

    >>> amounts = [transfer_amount(random.Random(i)) for i in range(200)]
    >>> all(Decimal("0.01") <= a <= Decimal("5000") and a == a.quantize(Decimal("0.01")) for a in amounts)
    True
    """
    return min(Decimal("5000.00"), _cents(rng.lognormvariate(3.69, 1.1)))


def payment_amount(rng: random.Random, merchant: Merchant) -> Decimal:
    return min(Decimal("5000.00"), _cents(float(merchant.median) * rng.lognormvariate(0.0, merchant.sigma)))


def unique_key() -> str:
    """Idempotency keys and new usernames: unique across runs, unlike the seeded choices (a
    restarted generator with the same seed would otherwise replay its first run's keys)."""
    return uuid.uuid4().hex


class Abort(Exception):
    """Ends a journey early with ``outcome``."""

    def __init__(self, outcome: str, detail: str = "") -> None:
        super().__init__(detail or outcome)
        self.outcome = outcome


@dataclass
class Toolkit:
    """What every journey shares: where the bank is, who the customers are, where results go."""

    config: LoadConfig
    gateway: HttpClient
    provisioner: Provisioner
    recorder: Recorder
    customers: Callable[[], list[User]]
    clock: Callable[[], float] = time.time
    journal: list[dict[str, Any]] | None = None    # money movements seen, when a test asks for them
    hurry: bool = False                             # draining: nobody thinks any more


class Session:
    """One customer's session (one run of ``journey``): their device's address, their token, and a
    step helper that counts the steps the run reaches."""

    def __init__(self, kit: Toolkit, user: User | None, rng: random.Random, journey: str) -> None:
        self.kit = kit
        self.user = user
        self.rng = rng
        self.journey = journey
        self._reached: set[str] = set()
        if user is not None:
            self.address = rng.choice(user.identity.addresses)
            self.user_agent = user.identity.user_agent
        else:
            address_range = rng.choices([r for r, _ in CUSTOMER_RANGES], weights=[w for _, w in CUSTOMER_RANGES])[0]
            self.address = address_range.address(rng.randrange(address_range.size))
            self.user_agent = rng.choice(USER_AGENTS)
        self.token: str | None = None

    def think(self) -> float:
        mean = self.kit.config.think_time
        if self.kit.hurry or mean <= 0:
            return 0.0
        return min(self.rng.expovariate(1.0 / mean), mean * 10)

    def reach(self, step: str) -> None:
        """The run reached ``step``: counted once per run, however often the step is sent."""
        if step not in self._reached:
            self._reached.add(step)
            self.kit.recorder.step_reached(self.journey, step)

    def send(self, step: str, method: str, path: str, payload: Any = None, *, auth: bool = True,
             key: str | None = None) -> Reply:
        """One request; records it; raises TransportError when no answer came."""
        self.reach(step)   # before sending: a step that gets no answer was still reached
        token = (self.user.token if self.user else self.token) if auth else None
        headers = headers_for(self.address, self.user_agent, token)
        if key is not None:
            headers[c.HEADER_IDEMPOTENCY_KEY] = key
        try:
            reply = self.kit.gateway.request_json(method, path, payload, headers=headers)
        except TransportError as exc:
            self.kit.recorder.request(step, exc.outcome, exc.seconds)
            raise
        self.kit.recorder.request(step, reply.outcome, reply.seconds)
        return reply

    def call(self, step: str, method: str, path: str, payload: Any = None, *, auth: bool = True,
             expect: tuple[int, ...] = (200,), refusals: tuple[int, ...] = (), key: str | None = None) -> Reply:
        """A request whose answer must be in ``expect`` (or ``refusals``); anything else ends the journey."""
        try:
            reply = self.send(step, method, path, payload, auth=auth, key=key)
        except TransportError as exc:
            raise Abort(JOURNEY_ERROR, f"{step}: {exc}") from None
        return self.check(step, reply, expect, refusals)

    def check(self, step: str, reply: Reply, expect: tuple[int, ...], refusals: tuple[int, ...] = ()) -> Reply:
        if reply.status in expect or reply.status in refusals:
            return reply
        if reply.status == 429:
            raise Abort(JOURNEY_RATE_LIMITED, step)
        if reply.status == 401 and self.user is not None:
            self.user.forget_token()   # e.g. the lab's signing key changed: log in afresh next time
        raise Abort(JOURNEY_ERROR, f"{step}: HTTP {reply.status} {reply.error_code() or ''}".strip())

    # --- steps several journeys share ------------------------------------------------------------

    def login(self, force: bool = False) -> None:
        user = self.user
        assert user is not None
        if not force and user.token_valid(self.kit.clock()):
            self.reach(LOGIN)   # still signed in: past the login step without a request
            return
        reply = self.call(LOGIN, "POST", f"{c.API_PREFIX}/auth/login",
                          {"username": user.username, "password": self.kit.config.password}, auth=False)
        user.remember_token(reply.json(), self.kit.clock())

    def accounts(self) -> list[dict[str, Any]]:
        reply = self.call(LIST_ACCOUNTS, "GET", f"{c.API_PREFIX}/accounts")
        return [a for a in (reply.json() or []) if a.get("currency") == CURRENCY]

    def top_up_if_low(self, accounts: list[dict[str, Any]]) -> None:
        """Salary day for a customer who ran low, so money journeys keep working for weeks."""
        user = self.user
        assert user is not None
        checking = next((a for a in accounts if a.get("type") == "checking"), None)
        now = self.kit.clock()
        if checking is None or Decimal(checking["balance"]) >= LOW_BALANCE or now - user.last_top_up < TOP_UP_EVERY:
            return
        user.last_top_up = now
        amount = _cents(self.rng.uniform(1500, 3500))
        try:
            reply = self.kit.provisioner.deposit(checking["id"], amount)
        except (SetupFailed, NotReady) as exc:
            log.warning("salary deposit failed", extra={"error": str(exc)})
            return
        checking["balance"] = str(Decimal(checking["balance"]) + amount)
        self.note({"kind": "deposit", "id": reply.json().get("id"), "to": checking["id"], "amount": amount,
                   "status": "completed"})

    def note(self, movement: dict[str, Any]) -> None:
        if self.kit.journal is not None:
            self.kit.journal.append(movement)

    def payee(self) -> str | None:
        """Another customer's checking account."""
        customers = self.kit.customers()
        for _ in range(5 if customers else 0):
            other = self.rng.choice(customers)
            if other is not self.user and "checking" in other.accounts:
                return other.accounts["checking"]
        return None


# --- journeys ------------------------------------------------------------------------------------

def check_balances(s: Session) -> Journey:
    s.login()
    accounts = s.accounts()
    yield s.think()
    if accounts and s.rng.random() < 0.5:
        account = s.rng.choice(accounts)
        s.call(GET_ACCOUNT, "GET", f"{c.API_PREFIX}/accounts/{account['id']}")
        yield s.think()
    return JOURNEY_OK


def history(s: Session) -> Journey:
    s.login()
    accounts = s.accounts()
    if not accounts:
        return JOURNEY_OK
    yield s.think()
    account = s.rng.choice(accounts)
    reply = s.call(LIST_TRANSFERS, "GET", f"{c.API_PREFIX}/transfers?account={account['id']}&limit=20")
    own = {a["id"] for a in accounts}
    sent = [t for t in (reply.json() or []) if t.get("from_account") in own]
    if sent and s.rng.random() < 0.3:
        yield s.think()
        s.call(GET_TRANSFER, "GET", f"{c.API_PREFIX}/transfers/{s.rng.choice(sent)['id']}")
    return JOURNEY_OK


def _choose_transfer(s: Session, accounts: list[dict[str, Any]]) -> tuple[dict, str, Decimal] | None:
    by_type = {a.get("type"): a for a in accounts}
    checking, savings = by_type.get("checking"), by_type.get("savings")
    rng = s.rng
    if savings is not None and checking is not None and rng.random() < FROM_SAVINGS_SHARE:
        source, target = savings, checking["id"]
    elif checking is None:
        return None
    else:
        source = checking
        roll = rng.random()
        if roll < UNKNOWN_PAYEE_SHARE:
            target = c.ACCOUNT_ID_PREFIX + uuid.UUID(int=rng.getrandbits(128)).hex[:16]
        elif savings is not None and roll < UNKNOWN_PAYEE_SHARE + OWN_SAVINGS_SHARE:
            target = savings["id"]
        else:
            payee = s.payee()
            if payee is None:
                if savings is None:
                    return None
                target = savings["id"]
            else:
                target = payee
    balance = Decimal(source["balance"])
    if rng.random() < DELIBERATE_OVERDRAFT_SHARE:
        return source, target, balance + _cents(rng.uniform(1, 500))
    if balance < Decimal("1.00"):
        return None
    # Customers rarely send their last euro: keep the amount within half the balance.
    return source, target, min(transfer_amount(rng), (balance / 2).quantize(Decimal("0.01")))


def transfer(s: Session) -> Journey:
    s.login()
    accounts = s.accounts()
    s.top_up_if_low(accounts)
    yield s.think()
    chosen = _choose_transfer(s, accounts)
    if chosen is None:   # an almost empty account, nobody to pay: the customer leaves without a transfer
        return JOURNEY_ABANDONED
    source, target, amount = chosen
    body = {"from_account": source["id"], "to_account": target, "amount": str(amount), "currency": CURRENCY}
    key = unique_key()
    try:
        first = s.send(TRANSFER, "POST", f"{c.API_PREFIX}/transfers", body, key=key)
    except TransportError:
        # No answer: the transfer may or may not have happened. The same key makes asking again safe.
        first = None
    if first is None or s.rng.random() < s.kit.config.retry_share:
        try:
            again = s.send(TRANSFER_RETRY, "POST", f"{c.API_PREFIX}/transfers", body, key=key)
        except TransportError as exc:
            raise Abort(JOURNEY_ERROR, f"{TRANSFER_RETRY}: {exc}") from None
        if first is not None and first.status < 500 and first.status != 429:
            same = (again.status == first.status and again.json() == first.json()
                    and again.headers.get(c.HEADER_IDEMPOTENT_REPLAYED) == "true")
            s.kit.recorder.replay(same)
            if not same:
                raise Abort(JOURNEY_ERROR, f"{TRANSFER_RETRY}: the same Idempotency-Key got a different answer "
                                           f"(HTTP {first.status} then {again.status})")
        final = again
        step = TRANSFER_RETRY
    else:
        final, step = first, TRANSFER
    s.check(step, final, (201,), REFUSALS)
    data = final.json() or {}
    s.note({"kind": "transfer", "id": data.get("id") or data.get("transfer_id"), "from": source["id"],
            "to": target, "amount": amount, "status": data.get("status", "rejected"), "key": key,
            "retried": step == TRANSFER_RETRY, "error": data.get("error")})
    if final.status != 201:
        return JOURNEY_REJECTED
    yield s.think()
    s.accounts()
    return JOURNEY_OK


def pay(s: Session) -> Journey:
    s.login()
    accounts = s.accounts()
    s.top_up_if_low(accounts)
    checking = next((a for a in accounts if a.get("type") == "checking"), None)
    if checking is None:   # nothing to pay from: the customer gives up
        return JOURNEY_ABANDONED
    yield s.think()
    merchant = s.rng.choices(MERCHANTS, weights=_MERCHANT_WEIGHTS)[0]
    amount = payment_amount(s.rng, merchant)
    key = unique_key()
    body = {"account": checking["id"], "merchant": merchant.name, "amount": str(amount), "currency": CURRENCY}
    reply = s.call(PAYMENT, "POST", f"{c.API_PREFIX}/payments", body, expect=(201,), refusals=REFUSALS, key=key)
    data = reply.json() or {}
    s.note({"kind": "payment", "id": data.get("id") or data.get("payment_id"), "from": checking["id"],
            "amount": amount, "status": data.get("status", "rejected"), "error": data.get("error")})
    return JOURNEY_OK if reply.status == 201 else JOURNEY_REJECTED


def failed_login(s: Session) -> Journey:
    user = s.user
    assert user is not None
    known = s.rng.random() < 0.7
    name = user.username
    # A mistyped name differs from one slip to the next, as a person's typos do (auth backs off a
    # name after a few failures in a row; a customer who always typed the same wrong one would hit it).
    typos = [f"{name}x", name[:-1], f"{name}1", name[1:], f"{name}.", f"{name}{name[-1]}"]
    username = name if known else s.rng.choice(typos)
    wrong = s.kit.config.password + s.rng.choice(["1", "!", "2024", "?"])
    # 429: auth's login backoff (a busy customer's slips can reach it); what a person then sees.
    s.call(FAILED_LOGIN, "POST", f"{c.API_PREFIX}/auth/login", {"username": username, "password": wrong},
           auth=False, expect=(401, 429))
    if known and s.rng.random() < 0.6:   # a typo, corrected
        yield s.think()
        s.login(force=True)
        s.accounts()
        return JOURNEY_OK
    return JOURNEY_ABANDONED   # the customer gives up (a mistyped name is rarely noticed)


def register(s: Session) -> Journey:
    username = f"{s.kit.config.user_prefix}n{unique_key()[:10]}"
    password = unique_key()
    credentials = {"username": username, "password": password}
    s.call(REGISTER, "POST", f"{c.API_PREFIX}/auth/register", credentials, auth=False, expect=(201,))
    yield s.think()
    reply = s.call(LOGIN, "POST", f"{c.API_PREFIX}/auth/login", credentials, auth=False)
    s.token = reply.json()["access_token"]
    yield s.think()
    s.call(OPEN_ACCOUNT, "POST", f"{c.API_PREFIX}/accounts", {"currency": CURRENCY, "type": "checking"}, expect=(201,))
    s.call(LIST_ACCOUNTS, "GET", f"{c.API_PREFIX}/accounts")
    return JOURNEY_OK


JOURNEY_FUNCTIONS: dict[str, Callable[[Session], Journey]] = {
    mix.CHECK_BALANCES: check_balances,
    mix.HISTORY: history,
    mix.TRANSFER: transfer,
    mix.PAY: pay,
    mix.FAILED_LOGIN: failed_login,
    mix.REGISTER: register,
}
NEEDS_CUSTOMER = frozenset(set(JOURNEY_FUNCTIONS) - {mix.REGISTER})
