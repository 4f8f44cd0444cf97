"""The gateway's edge: who the client is, whether it may send more, and how clients behave.

``X-Forwarded-For`` is honoured only when the direct peer is a configured proxy
(``OBSLAB_TRUSTED_PROXIES``, CIDRs; none by default) or the lab's load generator, which proves
it is with its service token (the gateway checks that); otherwise anyone could choose their own
address and dodge the rate limit and the login backoff. Per-client behaviour is
exported as bounded gauges (distinct clients, share of the busiest one), not per-client labels;
so are the authenticated customers (distinct customers over 5 minutes and an hour).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from obslab import settings
from obslab.settings import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

WINDOW_SECONDS = 60
MAX_TRACKED_CLIENTS = 200_000
# Customers remembered at most (about 200 bytes each: ~10 MB). Far above what one gateway process
# serves in an hour here; beyond it the longest-idle customers are forgotten first, so the gauges
# read the cap (at least that many) instead of memory growing with whoever holds a token.
MAX_TRACKED_CUSTOMERS = 50_000


def trusted_proxies(raw: str | None = None) -> tuple[Network, ...]:
    text = raw if raw is not None else settings.TRUSTED_PROXIES.get()
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{settings.TRUSTED_PROXIES.name}: {part!r} is not an address or CIDR "
                              "(e.g. 127.0.0.1/32,10.0.0.0/8)") from None
    return tuple(networks)


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address.strip())
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: str | None, trusted: Iterable[Network], *,
                   trust_peer: bool = False) -> str:
    """The original client: the right-most ``X-Forwarded-For`` hop that is not a trusted proxy.
    ``trust_peer``: the direct peer proved it may forward (the load generator's service token).

    >>> nets = trusted_proxies("127.0.0.1/32")
    >>> client_address("127.0.0.1", "203.0.113.9", nets)
    '203.0.113.9'
    >>> client_address("198.51.100.7", "203.0.113.9", nets)   # untrusted peer: header ignored
    '198.51.100.7'
    >>> client_address("127.0.0.1", "203.0.113.9", trusted_proxies(""))   # nothing trusted by default
    '127.0.0.1'
    """
    networks = tuple(trusted)
    peer = peer or "unknown"

    def is_trusted(ip) -> bool:
        return any(ip in net for net in networks)

    peer_ip = _parse(peer)
    if peer_ip is None or not forwarded_for or not (trust_peer or is_trusted(peer_ip)):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        ip = _parse(hop)
        if ip is None:
            return peer  # a malformed chain is not evidence of anything; trust only the socket
        if not is_trusted(ip):
            return str(ip)
    return peer


def client_key(address: str) -> str:
    """What limits and backoffs count per client: the address, or for IPv6 its /64 (one host
    commonly owns a whole /64 and could otherwise rotate through 2**64 "clients").

    >>> client_key("203.0.113.9"), client_key("2001:db8::1:2:3:4")
    ('203.0.113.9', '2001:db8::/64')
    """
    ip = _parse(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per client (``rate`` per second, ``burst`` deep); ``rate`` 0 turns it off.

    >>> limiter = RateLimiter(rate=1, burst=2, clock=lambda: 0.0)
    >>> [limiter.allow("a") for _ in range(3)]
    [True, True, False]
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_TRACKED_CLIENTS) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> RateLimiter:
        rate = settings.RATE_LIMIT_RPS.get()
        return cls(rate=rate, burst=settings.RATE_LIMIT_BURST.get(default=max(rate * 2, 1.0)))

    def allow(self, client: str) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = _Bucket(self.burst, now)
                self._buckets[client] = bucket
                if len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)  # forget the longest-idle client
            else:
                self._buckets.move_to_end(client)
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return True
            return False


class ClientWindow:
    """Requests per client over the last minute, in one-second slots."""

    def __init__(self, seconds: int = WINDOW_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self.seconds = seconds
        self.clock = clock
        self._slots: dict[int, Counter[str]] = {}
        self._lock = threading.Lock()

    def record(self, client: str) -> None:
        second = int(self.clock())
        with self._lock:
            slot = self._slots.get(second)
            if slot is None:
                slot = self._slots[second] = Counter()
                for old in [s for s in self._slots if s <= second - self.seconds]:
                    del self._slots[old]
            slot[client] += 1

    def totals(self) -> Counter[str]:
        horizon = int(self.clock()) - self.seconds
        with self._lock:
            slots = [slot for second, slot in self._slots.items() if second > horizon]
        total: Counter[str] = Counter()
        for slot in slots:
            total.update(slot)
        return total

    def active_clients(self) -> int:
        return len(self.totals())

    def top_client_share(self) -> float:
        totals = self.totals()
        if not totals:
            return 0.0
        return max(totals.values()) / sum(totals.values())


class CustomerWindow:
    """Distinct customers seen within each of several windows (label value -> seconds).

    One entry per customer, their last request, kept in order of that request; entries older
    than the longest window are pruned on every record and read. Ids never leave this object.

    >>> now = [0.0]
    >>> window = CustomerWindow({"5m": 300, "1h": 3600}, clock=lambda: now[0])
    >>> window.record("cus_a"); now[0] = 400.0; window.record("cus_b")
    >>> window.active("5m"), window.active("1h")
    (1, 2)
    """

    def __init__(self, windows: Mapping[str, float], clock: Callable[[], float] = time.monotonic,
                 max_customers: int = MAX_TRACKED_CUSTOMERS) -> None:
        self.windows = dict(windows)
        self.horizon = max(self.windows.values())
        self.clock = clock
        self.max_customers = max_customers
        self._last_seen: OrderedDict[str, float] = OrderedDict()   # least recently seen first
        self._lock = threading.Lock()

    def record(self, customer: str) -> None:
        now = self.clock()
        with self._lock:
            self._last_seen[customer] = now
            self._last_seen.move_to_end(customer)
            self._prune(now)

    def _prune(self, now: float) -> None:
        seen = self._last_seen
        while seen:
            oldest = next(iter(seen.values()))
            if now - oldest < self.horizon and len(seen) <= self.max_customers:
                return
            seen.popitem(last=False)

    def active(self, window: str) -> int:
        """Customers whose last request is less than the window's seconds old."""
        seconds = self.windows[window]
        now = self.clock()
        with self._lock:
            self._prune(now)
            if seconds >= self.horizon:
                return len(self._last_seen)
            count = 0
            for seen in reversed(self._last_seen.values()):   # newest first: stop at the first too old
                if now - seen >= seconds:
                    break
                count += 1
            return count
