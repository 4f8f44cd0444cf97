"""Client identities: many distinct, stable customer addresses and a heavy-tailed botnet."""

import ipaddress
import random
from collections import Counter
from decimal import Decimal

import pytest

from obslab.services.loadgen.identities import (
    BOTNET_RANGE,
    CUSTOMER_RANGES,
    AddressRange,
    BotnetSources,
    build_identities,
    customer_addresses,
)


def _username(index: int) -> str:
    return f"loadgen-{index:05d}"


def test_every_customer_has_one_or_two_addresses_and_no_two_customers_share_one():
    addresses = customer_addresses(2_000, seed=1)
    flat = [a for pair in addresses for a in pair]
    assert len(flat) == len(set(flat))
    assert {len(pair) for pair in addresses} == {1, 2}
    two = sum(len(pair) == 2 for pair in addresses) / len(addresses)
    assert 0.25 < two < 0.35


def test_customer_addresses_come_from_broadband_mobile_and_office_ranges():
    flat = [a for pair in customer_addresses(1_000, seed=2) for a in pair]
    labels = Counter(next(r.label for r, _ in CUSTOMER_RANGES if a in r) for a in flat)
    assert set(labels) == {"broadband", "mobile", "office"}
    assert labels["broadband"] > labels["office"]
    assert all(not ipaddress.ip_address(a).is_loopback for a in flat)


def test_the_same_seed_gives_the_same_customers_and_another_seed_other_addresses():
    first = build_identities(50, 7, _username)
    again = build_identities(50, 7, _username)
    other = build_identities(50, 8, _username)
    assert first == again
    assert [i.username for i in first] == [i.username for i in other]
    assert {a for i in first for a in i.addresses} != {a for i in other for a in i.addresses}


def test_opening_balances_are_whole_cents_and_plausible():
    for identity in build_identities(200, 1, _username):
        assert identity.opening_checking == identity.opening_checking.quantize(Decimal("0.01"))
        assert 0 < identity.opening_checking <= 20_000
        assert 0 < identity.opening_savings <= 200_000
        assert identity.activity > 0


def test_address_ranges_never_hand_out_network_or_broadcast_addresses():
    addresses = AddressRange("test", ["192.0.2.0/24", "198.51.100.0/23"])
    assert addresses.size == 3 * 254
    every = [addresses.address(i) for i in range(addresses.size)]
    assert len(set(every)) == addresses.size
    assert not any(a.endswith((".0", ".255")) for a in every)
    assert every[0] == "192.0.2.1" and every[-1] == "198.51.101.254"


def test_botnet_sources_are_distinct_and_never_customer_addresses():
    bots = BotnetSources(20_000, random.Random(1))
    assert len(set(bots.addresses)) == 20_000
    assert all(a in BOTNET_RANGE for a in bots.addresses[:2_000])
    assert not any(a in r for a in bots.addresses[:2_000] for r, _ in CUSTOMER_RANGES)


def test_a_few_bots_send_much_of_the_flood_and_the_long_tail_the_rest():
    bots = BotnetSources(2_000, random.Random(2))
    rng = random.Random(3)
    counts = Counter(bots.pick(rng) for _ in range(100_000))
    ranked = [n for _, n in counts.most_common()]
    top_1_percent = sum(ranked[:20]) / 100_000
    assert top_1_percent == pytest.approx(bots.share_of_top(0.01), abs=0.02)
    assert 0.3 < top_1_percent < 0.6
    assert ranked[0] / 100_000 < 0.2          # no single bot is the whole attack
    assert len(counts) > 1_500                # most bots are seen at all


def test_a_botnet_larger_than_its_address_space_is_refused():
    with pytest.raises(ValueError, match="sources"):
        BotnetSources(BOTNET_RANGE.size + 1, random.Random(1))
