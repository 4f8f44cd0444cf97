"""The journey mix: weights as documented, draws in proportion, overrides checked."""

import random
from collections import Counter

import pytest

from obslab.services.loadgen.mix import DEFAULT_WEIGHTS, JOURNEYS, JourneyMix
from obslab.settings import ConfigError


def test_the_default_mix_is_mostly_looking_a_quarter_transfers_and_a_few_failures():
    shares = JourneyMix.default().shares()
    assert shares == pytest.approx({"check_balances": 0.40, "history": 0.20, "transfer": 0.25, "pay": 0.10,
                                    "failed_login": 0.03, "register": 0.02})
    assert set(DEFAULT_WEIGHTS) == set(JOURNEYS)


def test_draws_follow_the_weights_within_sampling_error():
    mix = JourneyMix.default()
    rng = random.Random(42)
    draws = 40_000
    counts = Counter(mix.choose(rng) for _ in range(draws))
    for name, share in mix.shares().items():
        expected = draws * share
        # 4 standard deviations of a binomial count: fails by chance about once in 15,000 runs.
        assert abs(counts[name] - expected) < 4 * (expected * (1 - share)) ** 0.5, name


def test_a_mix_override_keeps_only_the_journeys_it_names():
    mix = JourneyMix.parse("transfer=3, pay=1")
    rng = random.Random(1)
    assert {mix.choose(rng) for _ in range(500)} == {"transfer", "pay"}
    assert mix.shares() == {"transfer": 0.75, "pay": 0.25}


def test_a_zero_weight_journey_is_never_drawn():
    mix = JourneyMix({"check_balances": 1, "register": 0})
    rng = random.Random(3)
    assert {mix.choose(rng) for _ in range(300)} == {"check_balances"}


def test_an_empty_mix_text_means_the_default_mix():
    assert JourneyMix.parse("  ").shares() == JourneyMix.default().shares()


@pytest.mark.parametrize("text, message", [
    ("transfers=1", "unknown journey 'transfers'"),
    ("transfer", "must look like NAME=WEIGHT"),
    ("transfer=lots", "must be a number"),
    ("transfer=-1", "must be >= 0"),
    ("transfer=0,pay=0", "at least one journey"),
    ("transfer=nan", "must be >= 0"),
])
def test_a_bad_mix_is_refused_with_a_message_that_names_the_problem(text, message):
    with pytest.raises(ConfigError, match=message):
        JourneyMix.parse(text)
