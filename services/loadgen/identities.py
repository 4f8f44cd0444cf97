"""Who the simulated clients are: customers with stable addresses, and a botnet's sources.

Every address is sent as ``X-Forwarded-For``; the gateway honours it from a trusted proxy (the
load generator stands in for one), so per-client rate limits and the DDoS detector's
per-client features see many distinct clients instead of one loopback address.

Customers come from home broadband (the documentation ranges), mobile carriers (carrier-grade
NAT space) and corporate offices; a customer has one address, or two (home and phone). A
botnet's sources come from ranges no customer uses, so a test or a detector can tell them
apart, and they send a heavy-tailed share of the flood each: a few noisy bots, a long tail of
quiet ones.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

HOSTS_PER_BLOCK = 254   # .1 to .254 of every /24: no network or broadcast addresses


class AddressRange:
    """The host addresses of some networks, addressable by index (no address list is built)."""

    def __init__(self, label: str, networks: Sequence[str]) -> None:
        self.label = label
        self.networks = [ipaddress.IPv4Network(n) for n in networks]
        self._blocks: list[int] = []   # /24 blocks per network, cumulative
        total = 0
        for network in self.networks:
            if network.prefixlen > 24:
                raise ValueError(f"{network} is smaller than a /24")
            total += 2 ** (24 - network.prefixlen)
            self._blocks.append(total)

    @property
    def size(self) -> int:
        return self._blocks[-1] * HOSTS_PER_BLOCK

    def address(self, index: int) -> str:
        block, host = divmod(index, HOSTS_PER_BLOCK)
        which = bisect.bisect_right(self._blocks, block)
        first_block = self._blocks[which - 1] if which else 0
        network = self.networks[which]
        return str(network.network_address + (block - first_block) * 256 + host + 1)

    def __contains__(self, address: str) -> bool:
        ip = ipaddress.IPv4Address(address)
        return any(ip in network for network in self.networks)


# (range, share of customer addresses)
CUSTOMER_RANGES: tuple[tuple[AddressRange, float], ...] = (
    (AddressRange("broadband", ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]), 0.45),
    (AddressRange("mobile", ["100.64.0.0/10"]), 0.40),
    (AddressRange("office", ["10.20.0.0/16", "10.31.0.0/16"]), 0.15),
)
BOTNET_RANGE = AddressRange("botnet", ["172.16.0.0/12", "198.18.0.0/15"])
# Zipf exponent of requests per bot: with 2000 bots the busiest sends ~12 % of the flood.
BOTNET_SKEW = 1.0

USER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "ObslabBank/5.12.0 (iPhone; iOS 17.4; Scale/3.00)",
    "ObslabBank/5.12.0 (Android 14; Pixel 8)",
)
BOT_USER_AGENTS: tuple[str, ...] = (
    "python-requests/2.31.0", "curl/8.5.0", "Go-http-client/1.1", "Mozilla/5.0", "okhttp/4.12.0", "",
)


@dataclass(frozen=True)
class UserIdentity:
    """One simulated customer: stable across restarts for the same seed and prefix."""

    index: int
    username: str
    addresses: tuple[str, ...]
    user_agent: str
    has_savings: bool
    opening_checking: Decimal
    opening_savings: Decimal
    activity: float          # relative share of journeys: some customers use the app far more


def _user_rng(seed: int, username: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{username}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _money(value: float) -> Decimal:
    return Decimal(f"{value:.2f}")


def customer_addresses(count: int, seed: int) -> list[tuple[str, ...]]:
    """``count`` customers' addresses: 1 or 2 each, all distinct, stable for a seed."""
    rng = random.Random(f"addresses:{seed}")
    capacity = sum(r.size for r, _ in CUSTOMER_RANGES)
    if count * 2 > capacity // 2:
        raise ValueError(f"at most {capacity // 4} customers fit the address ranges, asked for {count}")
    used: set[str] = set()
    taken = {r.label: 0 for r, _ in CUSTOMER_RANGES}
    result: list[tuple[str, ...]] = []
    for _ in range(count):
        wanted = 2 if rng.random() < 0.3 else 1
        addresses: list[str] = []
        while len(addresses) < wanted:
            # A half-full range drops out, so that drawing never stalls on collisions.
            open_ranges = [(r, w) for r, w in CUSTOMER_RANGES if taken[r.label] < r.size // 2]
            address_range = rng.choices([r for r, _ in open_ranges], weights=[w for _, w in open_ranges])[0]
            address = address_range.address(rng.randrange(address_range.size))
            if address in used:
                continue
            used.add(address)
            taken[address_range.label] += 1
            addresses.append(address)
        result.append(tuple(addresses))
    return result


def build_identities(count: int, seed: int, username: Callable[[int], str]) -> list[UserIdentity]:
    addresses = customer_addresses(count, seed)
    identities = []
    for index in range(count):
        name = username(index)
        rng = _user_rng(seed, name)
        identities.append(UserIdentity(
            index=index,
            username=name,
            addresses=addresses[index],
            user_agent=rng.choice(USER_AGENTS),
            has_savings=rng.random() < 0.6,
            opening_checking=_money(min(20_000.0, rng.lognormvariate(7.6, 0.6))),   # median ~2000
            opening_savings=_money(min(200_000.0, rng.lognormvariate(8.9, 0.9))),   # median ~7300
            activity=rng.lognormvariate(0.0, 0.8),
        ))
    return identities


class BotnetSources:
    """``count`` distinct source addresses and a heavy-tailed pick of the next one to send.

    >>> bots = BotnetSources(100, random.Random(3))
    >>> len(set(bots.addresses))
    100
    >>> bots.pick(random.Random(4)) in bots.addresses
    True
    """

    def __init__(self, count: int, rng: random.Random, skew: float = BOTNET_SKEW) -> None:
        if not 1 <= count <= BOTNET_RANGE.size:
            raise ValueError(f"a flood has 1 to {BOTNET_RANGE.size} sources, asked for {count}")
        self.addresses = [BOTNET_RANGE.address(i) for i in rng.sample(range(BOTNET_RANGE.size), count)]
        self._cumulative: list[float] = []
        total = 0.0
        for rank in range(1, count + 1):
            total += rank ** -skew
            self._cumulative.append(total)
        self._total = total

    def pick(self, rng: random.Random) -> str:
        index = bisect.bisect_right(self._cumulative, rng.random() * self._total)
        return self.addresses[min(index, len(self.addresses) - 1)]

    def share_of_top(self, fraction: float) -> float:
        """Expected share of requests sent by the busiest ``fraction`` of sources."""
        top = max(1, int(len(self.addresses) * fraction))
        return self._cumulative[top - 1] / self._total
