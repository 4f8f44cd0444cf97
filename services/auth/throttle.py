"""Login backoff: after a few failed logins, a username or a client address must wait.

Two counters are kept for every login attempt, and the attempt is refused (429, with
``Retry-After``) *before the password is checked* while either is in backoff, so that the right
password does not get through a backoff either:

* **per username** (5 failures): stops guessing one customer's password, from however many
  addresses. A success resets it. A username nobody has is counted exactly like a registered
  one, so a 429 does not tell which names exist.
* **per client address** (20 failures): stops one address from spraying many usernames
  (credential stuffing). A success does *not* reset it, or an attacker could keep guessing by
  logging in to an account of their own now and then; it is only forgotten after a quiet time.

After the threshold, the wait doubles with every further failure, from 30 s up to 15 minutes
(:class:`BackoffPolicy`); a key's failures are forgotten after a quiet period (1 h for a
username, 15 min for an address) counted from the end of its last wait. An attacker who waits
out every backoff gets about one guess per username every 15 minutes (~100 a day); one who
waits out the quiet period instead gets 5 an hour (~120 a day).

Lock-out abuse, and the trade-off chosen
----------------------------------------
A per-username backoff lets anyone lock a customer out by sending wrong passwords for their
name (the load generator's DDoS flood does that to "alice", "admin" ... as a side effect). We
do not lock accounts (no permanent lock, no unlock procedure to attack), and we keep a customer
logging in from where they logged in before: an address at which a username logged in
successfully in the last 30 days is *known* for that username, and attempts from a known
address are counted in a separate per-(username, address) bucket instead of the username's.
So a botnet guessing alice's password backs off "alice from strangers", but alice at home (or
on her phone) still logs in. What this does not protect:

* alice on a new device or network while she is under attack waits like the attacker does;
* an attacker behind the same address as alice (the same NAT, office or carrier-grade NAT)
  shares her known bucket: both back off together;
* a known address gets 5 guesses of its own per backoff cycle: the limit for an attacker who
  once had alice's password from that address (and that address's own counter stays in force
  for attempts on other usernames).

Failures on a username already known at that address do not count against the address either:
a customer mistyping their own password is not spraying usernames. Per-address backoff treats
everybody behind one address alike: a big NAT with many customers mistyping their names could
back off together (20 failures on unknown pairs within 15 minutes of each other).

Attempts are counted *when they start* (as failures until proven otherwise), so that concurrent
attempts cannot slip past a threshold while their Argon2 checks run: the 6th of 20 simultaneous
guesses is refused. An attempt that ends without a verdict (auth overloaded, database down) is
uncounted again.

Everything lives in memory, per auth process: it starts empty after a restart, and each of the
three tables (usernames, addresses, known pairs) keeps at most ``max_keys`` (50k) keys, the
least recently used going first: about 35 MiB when all are full, beside the 128 MiB hashing
budget in auth's 256 MiB. Flooding a table with 50k new keys can therefore evict a backoff;
that costs an attacker 50k failed logins (and Argon2 checks, bounded by the hashing gate and
the per-address backoff), an hour or more at the lab's rates. Everything is thread-safe, and
the clock is injectable (tests advance it instead of sleeping).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MAX_KEYS = 50_000
KNOWN_ADDRESS_SECONDS = 30 * 86400
_MAX_ADDRESS_CHARS = 64


@dataclass(frozen=True)
class BackoffPolicy:
    """``threshold`` failures start a wait of ``base_seconds``, doubling with every further
    failure up to ``cap_seconds``; failures are forgotten ``forget_seconds`` after the later of
    the last failure and the end of the last wait.

    >>> policy = BackoffPolicy(threshold=5, base_seconds=30, cap_seconds=900, forget_seconds=3600)
    >>> [policy.wait_seconds(n) for n in (4, 5, 6, 7, 10, 60)]
    [0.0, 30.0, 60.0, 120.0, 900.0, 900.0]
    """

    threshold: int
    base_seconds: float
    cap_seconds: float
    forget_seconds: float

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.base_seconds <= 0 or self.cap_seconds < self.base_seconds:
            raise ValueError(f"unusable backoff policy {self}")

    def wait_seconds(self, failures: int) -> float:
        if failures < self.threshold:
            return 0.0
        doublings = min(failures - self.threshold, 32)
        return float(min(self.cap_seconds, self.base_seconds * 2 ** doublings))


USERNAME_POLICY = BackoffPolicy(threshold=5, base_seconds=30, cap_seconds=900, forget_seconds=3600)
ADDRESS_POLICY = BackoffPolicy(threshold=20, base_seconds=30, cap_seconds=900, forget_seconds=900)


class _Entry:
    __slots__ = ("failures", "last_failure", "blocked_until")

    def __init__(self) -> None:
        self.failures = 0
        self.last_failure = 0.0
        self.blocked_until = 0.0


class Backoff:
    """Failures per key and how long each key must wait; at most ``max_keys`` keys (LRU).

    Not thread-safe on its own: :class:`LoginThrottle` holds one lock around its tables.
    """

    def __init__(self, policy: BackoffPolicy, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.policy = policy
        self.max_keys = max_keys
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _current(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now - max(entry.last_failure, entry.blocked_until) >= self.policy.forget_seconds:
            del self._entries[key]
            return None
        return entry

    def failures(self, key: str, now: float) -> int:
        entry = self._current(key, now)
        return entry.failures if entry else 0

    def wait(self, key: str, now: float) -> float:
        entry = self._current(key, now)
        return max(0.0, entry.blocked_until - now) if entry else 0.0

    def fail(self, key: str, now: float) -> None:
        entry = self._current(key, now)
        if entry is None:
            entry = self._entries[key] = _Entry()
            if len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        entry.failures += 1
        entry.last_failure = now
        wait = self.policy.wait_seconds(entry.failures)
        if wait:
            entry.blocked_until = max(entry.blocked_until, now + wait)

    def unfail(self, key: str, now: float) -> None:
        """Take back one failure counted in advance (the attempt ended without a verdict)."""
        entry = self._current(key, now)
        if entry is None:
            return
        entry.failures -= 1
        if entry.failures <= 0:
            del self._entries[key]
        elif entry.failures < self.policy.threshold:
            entry.blocked_until = 0.0

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


def normalized_address(address: str | None) -> str:
    return (address or "unknown").strip()[:_MAX_ADDRESS_CHARS].replace("\x00", "?") or "unknown"


def normalized_username(username: str) -> str:
    # Registered names are [a-z0-9_.-]; a login may name anything (it then fails), but never a
    # key of the (username, address) table, whose keys hold a "\x00".
    return username.replace("\x00", "?")


def _pair(username: str, address: str) -> str:
    # One string, not a tuple: less memory per key. "\x00" separates the parts; neither part
    # holds one (normalized_username, normalized_address), so no username or pair shares a key.
    return f"{username}\x00{address}"


class LoginAttempt:
    """One login that the throttle let through (``retry_after == 0``) or refused.

    A let-through attempt counts as a failure until :meth:`succeeded` (or :meth:`abandoned`,
    when it ended without a verdict); :meth:`failed` just says so."""

    def __init__(self, throttle: LoginThrottle | None, username: str, address: str, username_key: str,
                 counts_for_address: bool, retry_after: float) -> None:
        self._throttle = throttle
        self.username = username
        self.address = address
        self.username_key = username_key
        self.counts_for_address = counts_for_address
        self.retry_after = retry_after
        self.concluded = throttle is None

    @property
    def allowed(self) -> bool:
        return self.retry_after <= 0

    @property
    def retry_after_seconds(self) -> int:
        """``retry_after`` rounded up to whole seconds, as ``Retry-After`` says it.

        Rounded to milliseconds first: ``blocked_until - now`` is a float difference, and a
        30 s wait read at once can come out as 30.000000000000004 (then told as 31 s)."""
        return max(1, math.ceil(round(self.retry_after, 3)))

    def failed(self) -> None:
        self.concluded = True

    def succeeded(self) -> None:
        if not self.concluded and self._throttle is not None:
            self._throttle._succeeded(self)
        self.concluded = True

    def abandoned(self) -> None:
        if not self.concluded and self._throttle is not None:
            self._throttle._abandoned(self)
        self.concluded = True


class LoginThrottle:
    """Per-username and per-address login backoff (see the module docstring)."""

    def __init__(self, *, username_policy: BackoffPolicy = USERNAME_POLICY,
                 address_policy: BackoffPolicy = ADDRESS_POLICY, max_keys: int = DEFAULT_MAX_KEYS,
                 known_address_seconds: float = KNOWN_ADDRESS_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.usernames = Backoff(username_policy, max_keys)
        self.addresses = Backoff(address_policy, max_keys)
        self.known_address_seconds = known_address_seconds
        self.max_keys = max_keys
        self._known: OrderedDict[str, float] = OrderedDict()   # pair key -> last success
        self._lock = threading.Lock()

    def _is_known(self, pair: str, now: float) -> bool:
        seen = self._known.get(pair)
        if seen is None:
            return False
        if now - seen > self.known_address_seconds:
            del self._known[pair]
            return False
        return True

    def attempt(self, username: str, address: str | None) -> LoginAttempt:
        """Refused (``retry_after`` > 0) while the username or the address is in backoff;
        otherwise counted as a failure until it succeeds."""
        username, address = normalized_username(username), normalized_address(address)
        pair = _pair(username, address)
        with self._lock:
            now = self.clock()
            known = self._is_known(pair, now)
            username_key = pair if known else username
            wait = max(self.usernames.wait(username_key, now),
                       self.addresses.wait(address, now) if not known else 0.0)
            if wait > 0:
                return LoginAttempt(None, username, address, username_key, False, wait)
            self.usernames.fail(username_key, now)
            if not known:
                self.addresses.fail(address, now)
        return LoginAttempt(self, username, address, username_key, not known, 0.0)

    def _succeeded(self, attempt: LoginAttempt) -> None:
        with self._lock:
            now = self.clock()
            self.usernames.reset(attempt.username_key)
            if attempt.counts_for_address:
                self.addresses.unfail(attempt.address, now)
            pair = _pair(attempt.username, attempt.address)
            self._known[pair] = now
            self._known.move_to_end(pair)
            if len(self._known) > self.max_keys:
                self._known.popitem(last=False)

    def _abandoned(self, attempt: LoginAttempt) -> None:
        with self._lock:
            now = self.clock()
            self.usernames.unfail(attempt.username_key, now)
            if attempt.counts_for_address:
                self.addresses.unfail(attempt.address, now)

    def is_known(self, username: str, address: str) -> bool:
        with self._lock:
            return self._is_known(_pair(normalized_username(username), normalized_address(address)), self.clock())

    def sizes(self) -> dict[str, int]:
        with self._lock:
            return {"usernames": len(self.usernames), "addresses": len(self.addresses), "known": len(self._known)}

    def clear(self) -> None:
        with self._lock:
            self.usernames.clear()
            self.addresses.clear()
            self._known.clear()
