"""The pure parts of auth's hardening: login backoff, password policy, the hashing gate, and the
start-up checks of its settings. Time is an injected clock; nothing here sleeps to wait."""

from __future__ import annotations

import random
import threading
from importlib import resources

import pytest

from obslab.services.auth import policy
from obslab.services.auth.app import token_ttl_seconds
from obslab.services.auth.hashing import HashingGate, Overloaded, concurrent_hashes, password_hasher
from obslab.services.auth.throttle import ADDRESS_POLICY, USERNAME_POLICY, BackoffPolicy, LoginThrottle
from obslab.settings import ConfigError
from tests.support import PASSWORD

HOME = "198.51.100.7"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fail(throttle: LoginThrottle, username: str, address: str = HOME) -> float:
    """One wrong password; the wait it was refused with (0: it was let through)."""
    attempt = throttle.attempt(username, address)
    if attempt.allowed:
        attempt.failed()
    return attempt.retry_after


def succeed(throttle: LoginThrottle, username: str, address: str = HOME) -> float:
    attempt = throttle.attempt(username, address)
    if attempt.allowed:
        attempt.succeeded()
    return attempt.retry_after


# --- backoff -------------------------------------------------------------------------------------


def test_the_wait_doubles_from_the_threshold_up_to_a_cap():
    assert [USERNAME_POLICY.wait_seconds(n) for n in range(4, 12)] == [0, 30, 60, 120, 240, 480, 900, 900]
    assert ADDRESS_POLICY.wait_seconds(19) == 0 and ADDRESS_POLICY.wait_seconds(20) == 30
    assert USERNAME_POLICY.wait_seconds(10_000) == 900  # no overflow however long the attack
    with pytest.raises(ValueError):
        BackoffPolicy(threshold=0, base_seconds=1, cap_seconds=1, forget_seconds=1)


def test_five_failures_refuse_the_next_attempt_whatever_its_password_until_the_wait_is_over():
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    assert [fail(throttle, "alice", f"203.0.113.{i}") for i in range(5)] == [0] * 5
    refused = throttle.attempt("alice", "203.0.113.99")
    assert not refused.allowed and refused.retry_after == 30 and refused.retry_after_seconds == 30
    refused.succeeded()  # a refused attempt has nothing to report: it changes nothing
    clock.advance(29)
    assert succeed(throttle, "alice", "203.0.113.99") == pytest.approx(1)
    clock.advance(1)
    assert fail(throttle, "alice", "203.0.113.99") == 0  # one more guess after the wait ...
    assert throttle.attempt("alice", "203.0.113.99").retry_after == 60  # ... doubles it
    clock.advance(60)
    assert succeed(throttle, "alice", "203.0.113.99") == 0  # the right password, after the wait
    assert throttle.attempt("alice", "203.0.113.98").allowed  # and the count starts again


def test_a_wait_read_at_once_is_told_in_its_own_whole_seconds_not_one_more():
    # blocked_until - now is a float difference: at this clock, now + 30 - now is
    # 30.000000000000455, which a plain ceil told as "Retry-After: 31".
    clock = Clock(4087.502)
    throttle = LoginThrottle(clock=clock)
    for _ in range(5):
        fail(throttle, "alice")
    refused = throttle.attempt("alice", HOME)
    assert refused.retry_after > 30 and refused.retry_after_seconds == 30
    clock.advance(29.5)
    assert throttle.attempt("alice", HOME).retry_after_seconds == 1


def test_a_persistent_guesser_ends_up_with_one_guess_every_fifteen_minutes():
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    guesses, waits = 0, []
    for _ in range(40):
        wait = fail(throttle, "alice", f"203.0.113.{guesses % 250}")
        if wait:
            waits.append(wait)
            clock.advance(wait)
        else:
            guesses += 1
    assert waits[:6] == [30, 60, 120, 240, 480, 900] and set(waits[6:]) == {900}
    day = Clock(clock.now)
    throttle.clock = day
    start, guesses = day.now, 0
    while day.now - start < 86400:
        wait = fail(throttle, "alice", "198.18.0.1")
        if wait:
            day.advance(wait)
        else:
            guesses += 1
    assert guesses <= 100


def test_failures_are_forgotten_after_a_quiet_hour():
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(4):
        fail(throttle, "alice")
    clock.advance(USERNAME_POLICY.forget_seconds)
    for _ in range(4):
        assert fail(throttle, "alice") == 0
    assert throttle.attempt("alice", HOME).allowed


def test_a_success_resets_the_username_but_not_the_address():
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(4):
        fail(throttle, "alice", "203.0.113.5")
    succeed(throttle, "alice", "203.0.113.5")
    for i in range(15):
        fail(throttle, f"victim{i}", "203.0.113.6")
    assert succeed(throttle, "mallory", "203.0.113.6") == 0  # the attacker's own account ...
    for i in range(15, 19):
        assert fail(throttle, f"victim{i}", "203.0.113.6") == 0
    # ... did not buy more guesses: 19 failures + this one reach the address's threshold of 20
    assert fail(throttle, "victim19", "203.0.113.6") == 0
    assert throttle.attempt("victim20", "203.0.113.6").retry_after == 30


def test_credential_stuffing_from_one_address_backs_the_address_off():
    throttle = LoginThrottle(clock=Clock())
    results = [fail(throttle, f"user{i}", "198.18.7.7") for i in range(25)]
    assert results[:20] == [0] * 20 and all(wait > 0 for wait in results[20:])
    assert throttle.attempt("user0", "198.18.7.8").allowed  # another address is not concerned


def test_someone_locking_alice_out_does_not_stop_her_where_she_logged_in_before():
    throttle = LoginThrottle(clock=Clock())
    assert succeed(throttle, "alice", HOME) == 0
    for bot in range(30):
        fail(throttle, "alice", f"198.18.0.{bot}")
    assert not throttle.attempt("alice", "192.0.2.200").allowed  # a new address waits like the bots
    assert succeed(throttle, "alice", HOME) == 0  # alice at home does not
    assert throttle.is_known("alice", HOME) and not throttle.is_known("alice", "198.18.0.1")


def test_an_attacker_at_a_known_address_still_gets_only_five_guesses():
    throttle = LoginThrottle(clock=Clock())
    succeed(throttle, "alice", HOME)
    assert [fail(throttle, "alice", HOME) for _ in range(6)][-1] == 30
    assert not throttle.attempt("alice", HOME).allowed
    assert throttle.attempt("bob", HOME).allowed  # the address itself is not backed off


def test_a_username_cannot_name_someone_elses_known_address_bucket():
    throttle = LoginThrottle(clock=Clock())
    succeed(throttle, "alice", HOME)
    for _ in range(10):
        fail(throttle, f"alice\x00{HOME}", "198.18.0.1")
    assert succeed(throttle, "alice", HOME) == 0


def test_known_addresses_expire():
    clock = Clock()
    throttle = LoginThrottle(clock=clock, known_address_seconds=3600)
    succeed(throttle, "alice", HOME)
    clock.advance(3601)
    assert not throttle.is_known("alice", HOME)


def test_concurrent_guesses_cannot_slip_past_the_threshold():
    throttle = LoginThrottle(clock=Clock())
    start = threading.Barrier(20)
    allowed = []

    def guess() -> None:
        start.wait()
        attempt = throttle.attempt("alice", "198.18.1.1")
        allowed.append(attempt.allowed)
        if attempt.allowed:
            attempt.failed()

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 5


def test_an_attempt_that_ends_without_a_verdict_does_not_count():
    throttle = LoginThrottle(clock=Clock())
    for _ in range(10):
        attempt = throttle.attempt("alice", HOME)
        assert attempt.allowed
        attempt.abandoned()  # e.g. the hashing gate was full: 503, not a wrong password
    assert throttle.sizes() == {"usernames": 0, "addresses": 0, "known": 0}


def test_a_customer_who_mistypes_once_then_logs_in_is_never_refused():
    """The load generator's failed_login journey for its busiest customer (about 7 an hour at
    the default rate; 10 here) for a day: 70 % a wrong password, corrected 6 times in 10, and
    30 % a mistyped username, from the customer's own address; between them, the customer's
    other journeys log in again whenever the 15-minute token has expired."""
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    rng = random.Random(7)
    token_expires = clock.now
    for _ in range(24 * 10):
        clock.advance(rng.expovariate(10 / 3600))
        if clock.now >= token_expires:
            assert succeed(throttle, "loadgen-00001", HOME) == 0
            token_expires = clock.now + 900
        if rng.random() < 0.3:
            # A username nobody has is throttled like any other (a difference would tell which
            # names exist): the same mistyped name all day long backs off, ...
            fail(throttle, "loadgen-00001x", HOME)
        else:
            assert fail(throttle, "loadgen-00001", HOME) == 0
            if rng.random() < 0.6:
                assert succeed(throttle, "loadgen-00001", HOME) == 0
    # ... but neither the customer's own username nor address ever is.
    assert throttle.addresses.wait(HOME, clock.now) == 0


def test_the_tables_are_bounded_and_forget_the_least_recently_used_first():
    throttle = LoginThrottle(clock=Clock(), max_keys=100)
    for i in range(1000):
        fail(throttle, f"user{i}", f"198.18.{i // 250}.{i % 250}")
        succeed(throttle, f"user{i}", f"198.18.{i // 250}.{i % 250}")
        fail(throttle, f"other{i}", f"198.18.{i // 250}.{i % 250}")
    assert all(size <= 100 for size in throttle.sizes().values())
    assert not throttle.is_known("user0", "198.18.0.0") and throttle.is_known("user999", "198.18.3.249")


def test_the_throttle_is_thread_safe():
    throttle = LoginThrottle(max_keys=50)
    errors = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(2000):
                user, address = f"u{rng.randrange(80)}", f"10.0.0.{rng.randrange(80)}"
                attempt = throttle.attempt(user, address)
                if attempt.allowed:
                    rng.choice([attempt.failed, attempt.succeeded, attempt.abandoned])()
        except Exception as exc:  # pragma: no cover - what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and all(size <= 50 for size in throttle.sizes().values())


def test_addresses_are_bounded_in_length():
    throttle = LoginThrottle(clock=Clock())
    fail(throttle, "alice", "x" * 10_000)
    assert throttle.sizes()["addresses"] == 1
    assert throttle.attempt("alice", None).allowed


# --- password policy -----------------------------------------------------------------------------


def test_the_common_password_list_is_a_real_lowercase_list():
    text = resources.files("obslab.services.auth").joinpath(policy.COMMON_PASSWORDS_FILE).read_text()
    entries = [line for line in text.splitlines() if line and not line.startswith("# ")]
    assert len(entries) >= 1000 and len(set(entries)) == len(entries)
    assert all(entry == entry.lower() == entry.strip() for entry in entries)
    assert sum(1 for entry in entries if 8 <= len(entry) <= 128) >= 1000  # ones registration could see
    assert {"password1", "qwerty123", "letmein", "iloveyou", "1qaz2wsx", "summer2024"} <= policy.common_passwords()


@pytest.mark.parametrize("password", ["Password1", "QWERTY123", "  letmein1  ", "P@ssw0rd", "September2023",
                                      "1q2w3e4r5t", "iloveyou!", "Welcome123", "trustno1!"])
def test_common_passwords_are_refused_whatever_their_case(password):
    assert policy.password_problem("someone", password) == (
        "is one of the most common passwords; choose a less guessable one")


@pytest.mark.parametrize("username, password, problem", [
    ("alice99", "ALICE99", "must not be the username"),
    ("alice99", "alice99alice99", "must not contain the username"),
    ("bob.smith", "my name is Bob.Smith", "must not contain the username"),
])
def test_the_username_as_or_in_the_password_is_refused(username, password, problem):
    assert policy.password_problem(username, password) == problem


@pytest.mark.parametrize("password", [PASSWORD, "demo-password", "loadgen-customer-password", "longenough",
                                      "4e1f0c5a9b2d47f8a6c3e0b1d2f3a4b5"])
def test_the_labs_own_passwords_are_accepted(password):
    for username in ("alice", "bob", "loadgen-00001", "lgmoney-00003"):
        assert policy.password_problem(username, password) is None


# --- hashing gate and Argon2 settings -------------------------------------------------------------


def test_the_number_of_concurrent_hashes_is_the_budget_over_the_memory_per_hash():
    assert concurrent_hashes(128, 65536) == 2
    assert concurrent_hashes(256, 65536) == 4
    assert concurrent_hashes(128, 100_000) == 1
    assert concurrent_hashes(1, 65536) == 1  # at least one, whatever the arithmetic


def test_the_gate_never_lets_more_hashes_run_than_it_has_slots_and_refuses_after_the_wait():
    gate = HashingGate(slots=2, wait_seconds=0.05)
    inside = threading.Event()
    release = threading.Event()
    results = []

    def hold() -> None:
        with gate.slot():
            inside.set()
            release.wait(5)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for holder in holders:
        holder.start()
    while gate.in_use < 2:
        inside.wait(0.01)
    for _ in range(3):
        try:
            with gate.slot():
                results.append("ran")
        except Overloaded as exc:
            results.append(exc.retry_after_seconds)
    release.set()
    for holder in holders:
        holder.join()
    assert results == [1, 1, 1] and gate.peak == 2 and gate.refused == 3
    with gate.slot():
        assert gate.in_use == 1  # slots come back after use (and after errors: a context manager)


@pytest.fixture
def argon2_env(monkeypatch):
    for name in ("OBSLAB_ARGON2_TIME_COST", "OBSLAB_ARGON2_MEMORY_KIB", "OBSLAB_AUTH_HASH_MEMORY_MIB",
                 "OBSLAB_AUTH_HASH_WAIT_SECONDS", "OBSLAB_TOKEN_TTL_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("env, named", [
    ({"OBSLAB_ARGON2_MEMORY_KIB": "8"}, "OBSLAB_ARGON2_MEMORY_KIB=8"),
    ({"OBSLAB_ARGON2_MEMORY_KIB": "31"}, "OBSLAB_ARGON2_MEMORY_KIB=31"),
    ({"OBSLAB_ARGON2_MEMORY_KIB": "262144"}, "OBSLAB_AUTH_HASH_MEMORY_MIB=128"),
    ({"OBSLAB_ARGON2_MEMORY_KIB": "65536", "OBSLAB_AUTH_HASH_MEMORY_MIB": "32"}, "OBSLAB_AUTH_HASH_MEMORY_MIB=32"),
    ({"OBSLAB_ARGON2_MEMORY_KIB": "lots"}, "OBSLAB_ARGON2_MEMORY_KIB"),
    ({"OBSLAB_ARGON2_TIME_COST": "0"}, "OBSLAB_ARGON2_TIME_COST"),
    ({"OBSLAB_ARGON2_TIME_COST": "100000"}, "OBSLAB_ARGON2_TIME_COST=100000"),
])
def test_argon2_settings_the_library_would_refuse_are_a_one_line_config_error(argon2_env, env, named):
    for name, value in env.items():
        argon2_env.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        password_hasher()
    message = str(refused.value)
    assert named in message and "\n" not in message


def test_argon2_settings_the_library_accepts_build_a_working_hasher(argon2_env):
    argon2_env.setenv("OBSLAB_ARGON2_TIME_COST", "1")
    argon2_env.setenv("OBSLAB_ARGON2_MEMORY_KIB", "32")  # the smallest: 8 KiB x 4 lanes
    hasher = password_hasher()
    assert hasher.memory_cost == 32 and hasher.verify(hasher.hash(PASSWORD), PASSWORD)
    assert HashingGate.for_hasher(hasher).slots == 128 * 1024 // 32


@pytest.mark.parametrize("ttl", ["10", "59", "3601", "604800"])
def test_a_token_lifetime_outside_one_minute_to_one_hour_stops_auth(argon2_env, ttl):
    argon2_env.setenv("OBSLAB_TOKEN_TTL_SECONDS", ttl)
    with pytest.raises(ConfigError, match="between 60 and 3600"):
        token_ttl_seconds()


@pytest.mark.parametrize("ttl, expected", [(None, 900), ("60", 60), ("3600", 3600)])
def test_a_token_lifetime_within_bounds_is_used(argon2_env, ttl, expected):
    if ttl is not None:
        argon2_env.setenv("OBSLAB_TOKEN_TTL_SECONDS", ttl)
    assert token_ttl_seconds() == expected

