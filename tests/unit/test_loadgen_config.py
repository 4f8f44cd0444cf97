"""Load generator settings: argument > environment > default, and one clear line per mistake."""

import argparse

import pytest

from obslab.cli.load import add_arguments, config_from_arguments
from obslab.services.loadgen.config import LoadConfig
from obslab.settings import ConfigError, parse_duration


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in ("OBSLAB_LOAD_RATE", "OBSLAB_LOAD_USERS", "OBSLAB_LOAD_FLAT", "OBSLAB_LOAD_MIX",
                 "OBSLAB_GATEWAY_URL", "OBSLAB_ACCOUNTS_URL", "OBSLAB_PORT_OFFSET"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("2.5m", 150),
                                           ("1w", 604800), ("1y", 31536000), ("500ms", 0.5), ("1m30s", 90)])
def test_durations_read_like_a_person_writes_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "-5m", "0s", "m"])
def test_a_duration_that_is_not_understood_says_how_to_write_one(text):
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_defaults_suit_a_two_core_laptop_and_follow_the_lab_ports():
    config = config_from_arguments(_args())
    assert (config.rate, config.concurrency, config.users) == (2.0, 8, 200)
    assert config.gateway_url == "http://127.0.0.1:8080"
    assert config.accounts_url == "http://127.0.0.1:8082"
    assert not config.flat and config.duration is None and config.max_requests is None


def test_arguments_win_over_the_environment_which_wins_over_defaults(monkeypatch):
    monkeypatch.setenv("OBSLAB_LOAD_RATE", "7")
    monkeypatch.setenv("OBSLAB_LOAD_USERS", "30")
    monkeypatch.setenv("OBSLAB_LOAD_FLAT", "1")
    monkeypatch.setenv("OBSLAB_GATEWAY_URL", "http://gateway:8080/")
    config = config_from_arguments(_args("--rate", "3.5", "--duration", "2m", "--mix", "pay=1"))
    assert config.rate == 3.5 and config.users == 30 and config.flat
    assert config.gateway_url == "http://gateway:8080"
    assert config.duration == 120 and config.mix.shares() == {"pay": 1.0}


@pytest.mark.parametrize("argv, message", [
    (("--rate", "fast"), "--rate must be a number, got 'fast'"),
    (("--users", "2.5"), "--users must be a whole number"),
    (("--rate", "-1"), "rate .* must be between 0 and 1000"),
    (("--concurrency", "0"), "concurrency must be between 1 and 256"),
    (("--think-time", "-2"), "think time"),
    (("--requests", "0"), "requests must be at least 1"),
    (("--duration", "5m", "--requests", "10"), "either --duration or --requests"),
    (("--gateway", "localhost:8080"), "gateway URL must look like http://HOST:PORT"),
    (("--mix", "coffee=1"), "unknown journey 'coffee'"),
])
def test_bad_options_are_refused_with_one_line_that_says_what_to_fix(argv, message):
    with pytest.raises(ConfigError, match=message) as raised:
        config_from_arguments(_args(*argv))
    assert "\n" not in str(raised.value)


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("OBSLAB_LOAD_RATE", "lots")
    with pytest.raises(ConfigError, match="OBSLAB_LOAD_RATE"):
        LoadConfig.from_environment()


def test_usernames_are_the_prefix_and_five_digits():
    config = LoadConfig("http://g:1", "http://a:2", user_prefix="lg-")
    assert config.username(42) == "lg-00042"
    with pytest.raises(ConfigError, match="user prefix"):
        LoadConfig("http://g:1", "http://a:2", user_prefix="Bad Prefix")
