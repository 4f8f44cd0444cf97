"""Attacks on logins, passwords and tokens, each through the real services on real HTTP.

Each test is named after the attack it stops. The login backoff runs on an injected clock
(``clock`` fixture): a test moves time on instead of sleeping.
"""

from __future__ import annotations

import threading
import time
import uuid

import jwt
import pytest
import requests

from obslab import conventions as c
from obslab import secrets
from obslab.services.auth.app import EXTENSION
from obslab.services.auth.app import create_app as auth_app
from obslab.services.auth.hashing import password_hasher
from obslab.services.auth.store import UserStore
from obslab.services.auth.throttle import LoginThrottle
from obslab.services.common import tokens
from obslab.settings import ConfigError
from tests.support import PASSWORD, Customer, serve, service_headers

API = c.API_PREFIX + "/auth"
MiB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(request) -> Clock:
    """A fresh login backoff on a clock the test moves, in the stack's auth if the test uses the
    stack: every test starts with a clean slate (all of them log in from 127.0.0.1)."""
    fake = Clock()
    if "stack" in request.fixturenames:
        stack = request.getfixturevalue("stack")
        stack.app(c.AUTH).extensions[EXTENSION].throttle = LoginThrottle(clock=fake)
    return fake


def login(gateway: str, username: str, password: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{gateway}{API}/login", json={"username": username, "password": password},
                         headers=headers or {}, timeout=30)


def new_username() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


def assert_backed_off(response: requests.Response) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "too_many_attempts"
    assert int(response.headers["Retry-After"]) == body["retry_after_seconds"] > 0


# --- brute force ---------------------------------------------------------------------------------


def test_sixty_wrong_passwords_then_the_right_one_is_refused(gateway, clock):
    victim = Customer(gateway)
    answers = [login(gateway, victim.username, f"guess-{n:02d}-password") for n in range(60)]
    assert [a.status_code for a in answers[:5]] == [401] * 5
    for answer in answers[5:]:
        assert_backed_off(answer)
    right = login(gateway, victim.username, PASSWORD)
    assert_backed_off(right)  # the right password, during the backoff, is refused all the same
    assert "access_token" not in right.text
    # A backoff, not a lock: once it has passed, the owner logs in (and that resets the count).
    clock.advance(int(right.headers["Retry-After"]))
    assert login(gateway, victim.username, PASSWORD).status_code == 200
    assert login(gateway, victim.username, "one-more-typo").status_code == 401


def test_twenty_simultaneous_guesses_get_no_more_tries_than_five_sequential_ones(gateway):
    victim = Customer(gateway)
    start = threading.Barrier(20)
    codes: list[int] = []

    def guess(n: int) -> None:
        start.wait()
        codes.append(login(gateway, victim.username, f"parallel-guess-{n}").status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Five tries at most. On a loaded machine some of the five may instead wait too long for a
    # hashing slot and get 503 overloaded: a refusal too, and never a sixth try.
    assert 1 <= codes.count(401) <= 5 and set(codes) <= {401, 429, 503}, codes
    assert codes.count(429) >= 15, codes


def test_a_brute_force_does_not_open_the_gateways_circuit_to_auth_for_everybody_else(stack, gateway):
    """Backoff answers (429 with Retry-After) are auth working, not failing: the gateway must
    pass them on, not count them towards its circuit breaker (which, open, would fail every
    customer's login: a denial of service by brute force)."""
    victim, bystander = Customer(gateway), Customer(gateway)
    answers = [login(gateway, victim.username, f"guess-{n}") for n in range(15)]
    assert [a.status_code for a in answers] == [401] * 5 + [429] * 10
    assert all(a.headers.get("Retry-After") for a in answers[5:])
    assert stack.app(c.GATEWAY).extensions["obslab"].peer(c.AUTH).breaker.state.value == "closed"
    assert login(gateway, bystander.username, PASSWORD).status_code == 200


def test_rotating_forwarded_for_does_not_reset_the_login_backoff(gateway):
    """A client without a service token cannot choose its address with X-Forwarded-For: the
    gateway ignores the header, so neither the username's nor the address's count restarts."""
    victim = Customer(gateway)
    for n in range(5):
        spoofed = {"X-Forwarded-For": f"203.0.113.{n + 1}"}
        assert login(gateway, victim.username, "wrong-password", spoofed).status_code == 401
    assert_backed_off(login(gateway, victim.username, PASSWORD, {"X-Forwarded-For": "203.0.113.77"}))

    # Credential stuffing: one guess per username, each from "another address".
    for n in range(20):
        spoofed = {"X-Forwarded-For": f"198.18.{n // 250}.{n % 250 + 1}"}
        assert login(gateway, new_username(), "Winter2024!", spoofed).status_code == 401
    assert_backed_off(login(gateway, new_username(), "Winter2024!", {"X-Forwarded-For": "198.18.9.9"}))


def test_only_the_load_generator_may_say_which_address_a_login_came_from(gateway):
    """The counterpart of the test above: the load generator proves who it is, and its
    X-Forwarded-For is honoured; 20 stuffing guesses from 20 addresses are 20 addresses."""
    forwarder = service_headers(c.LOAD_GENERATOR, c.GATEWAY)
    for n in range(21):
        spoofed = {**forwarder, "X-Forwarded-For": f"198.18.20.{n + 1}"}
        assert login(gateway, new_username(), "Winter2024!", spoofed).status_code == 401


def test_bots_guessing_alices_password_do_not_lock_her_out_where_she_logged_in_before(gateway):
    forwarder = service_headers(c.LOAD_GENERATOR, c.GATEWAY)
    alice = Customer(gateway)
    home = {**forwarder, "X-Forwarded-For": "192.0.2.10"}
    assert login(gateway, alice.username, PASSWORD, home).status_code == 200
    for bot in range(12):
        login(gateway, alice.username, f"bot-guess-{bot}", {**forwarder, "X-Forwarded-For": f"198.18.30.{bot + 1}"})
    assert_backed_off(login(gateway, alice.username, PASSWORD, {**forwarder, "X-Forwarded-For": "192.0.2.99"}))
    assert login(gateway, alice.username, PASSWORD, home).status_code == 200


# --- hashing memory ------------------------------------------------------------------------------


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM (the peak) to the current RSS
        return True
    except OSError:
        return False


def test_eight_concurrent_logins_stay_within_the_hashing_memory_budget_and_overload_answers_503(
        monkeypatch, tmp_path):
    per_hash_mib, budget_mib = 32, 64  # two hashes at once; eight at once would be 256 MiB
    monkeypatch.setenv("OBSLAB_ARGON2_MEMORY_KIB", str(per_hash_mib * 1024))
    monkeypatch.setenv("OBSLAB_ARGON2_TIME_COST", "12")  # ~0.3 s a hash: the logins overlap
    monkeypatch.setenv("OBSLAB_AUTH_HASH_MEMORY_MIB", str(budget_mib))
    monkeypatch.setenv("OBSLAB_AUTH_HASH_WAIT_SECONDS", "30")  # first, every login gets its turn
    app = auth_app(f"sqlite:///{tmp_path / 'auth.sqlite3'}")
    state = app.extensions[EXTENSION]
    assert state.gate.slots == 2
    store = UserStore(app.extensions["obslab"].db)
    stored = state.hasher.hash(PASSWORD)
    users = [store.create(f"cus_{uuid.uuid4().hex[:16]}", new_username(), stored).username for _ in range(8)]
    as_gateway = service_headers(c.GATEWAY, c.AUTH)
    server = serve(app)

    def eight_concurrent_logins() -> list[requests.Response]:
        start = threading.Barrier(8)
        answers: list[requests.Response] = []

        def log_in(n: int) -> None:
            headers = {**as_gateway, c.HEADER_CLIENT_ADDRESS: f"192.0.2.{n + 1}"}
            start.wait()
            answers.append(requests.post(f"{server.url}/tokens", json={"username": users[n], "password": PASSWORD},
                                         headers=headers, timeout=60))

        threads = [threading.Thread(target=log_in, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return answers

    try:
        # All eight are served, never more than two hashes at once: the memory stays in budget.
        rss_before = _vm_kib("VmRSS")
        measured = _reset_peak_rss()
        served = eight_concurrent_logins()
        peak_growth_mib = (_vm_kib("VmHWM") - rss_before) / 1024
        assert [a.status_code for a in served] == [200] * 8
        assert state.gate.peak == 2
        if measured:
            assert peak_growth_mib < budget_mib + 24, f"peak RSS grew {peak_growth_mib:.0f} MiB"
        print(f"\nhashing gate: 8 concurrent logins served, peak {state.gate.peak} concurrent hashes, "
              f"peak RSS growth {peak_growth_mib:.0f} MiB (budget {budget_mib} MiB, {8 * per_hash_mib} MiB "
              "if all eight hashed at once)")

        # With a short wait, the logins that find no free slot in time are answered 503 at once.
        state.gate.wait_seconds = 0.05
        mixed = [a.status_code for a in eight_concurrent_logins()]
        assert set(mixed) <= {200, 503} and 200 in mixed, mixed
        with state.gate.slot(), state.gate.slot():  # both slots busy (say, registrations)
            overloaded = eight_concurrent_logins()
            registration = requests.post(f"{server.url}/users", json={"username": new_username(),
                                                                      "password": PASSWORD},
                                         headers=as_gateway, timeout=60)
        assert registration.status_code == 503 and registration.headers["Retry-After"] == "1"
        for answer in overloaded:
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "overloaded"
            assert answer.headers["Retry-After"] == "1" and answer.json()["retry_after_seconds"] == 1
        assert state.gate.peak == 2
        registry = app.extensions["obslab"].metrics.registry
        assert registry.get_sample_value(c.LOGINS.name, {"outcome": "overloaded"}) == 8 + mixed.count(503)
        print(f"hashing gate, 0.05 s wait: {mixed.count(200)} x 200, {mixed.count(503)} x 503; "
              "with both slots busy: 8 x 503")

        # The service is fine afterwards, and an overloaded login did not count as a wrong password.
        retry = requests.post(f"{server.url}/tokens", json={"username": users[0], "password": PASSWORD},
                              headers={**as_gateway, c.HEADER_CLIENT_ADDRESS: "192.0.2.1"}, timeout=60)
        assert retry.status_code == 200
        assert state.throttle.sizes()["usernames"] == 0
    finally:
        server.stop()


# --- passwords -----------------------------------------------------------------------------------


def test_a_common_password_or_the_username_as_password_is_refused(gateway):
    username = new_username()
    for password in ("Password1", "qwerty123", "LetMeIn123", "iloveyou!", "December2023",
                     username, username.upper(), f"{username}!2024"):
        response = requests.post(f"{gateway}{API}/register", json={"username": username, "password": password},
                                 timeout=30)
        assert response.status_code == 400, password
        assert response.json()["error"] == "invalid_request"
        assert response.json()["message"].startswith("password: ")
    accepted = requests.post(f"{gateway}{API}/register", json={"username": username, "password": PASSWORD},
                             timeout=30)
    assert accepted.status_code == 201


# --- tokens --------------------------------------------------------------------------------------


def _forged(customer_id: str, issued: int, expires: int) -> str:
    """A token signed with the lab's real key (a leaked key, or a misconfigured issuer)."""
    return jwt.encode({"sub": customer_id, "name": "x", "iss": tokens.ISSUER, "aud": tokens.AUDIENCE,
                       "iat": issued, "nbf": issued, "exp": expires}, secrets.jwt_secret(), algorithm="HS256")


def test_a_forged_token_with_a_week_long_lifetime_is_refused(gateway):
    customer = Customer(gateway)
    now, week = int(time.time()), 7 * 86400
    for token in (_forged(customer.id, now, now + week),
                  _forged(customer.id, now - week + 3600, now + 3600)):  # backdated to look fresh
        response = requests.get(f"{gateway}{c.API_PREFIX}/accounts",
                                headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert response.status_code == 401
        assert response.json() == {"error": "invalid_token", "message": tokens.LIFETIME_TOO_LONG}
    hour = _forged(customer.id, now, now + tokens.MAX_TOKEN_SECONDS)
    assert requests.get(f"{gateway}{c.API_PREFIX}/accounts", headers={"Authorization": f"Bearer {hour}"},
                        timeout=30).status_code == 200


def test_a_token_error_does_not_reveal_library_internals(gateway):
    secret = secrets.jwt_secret()
    now = int(time.time())
    claims = {"sub": "cus_x", "iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "iat": now, "exp": now + 60}
    probes = [
        "not.a.jwt",
        "eyJhbGciOiJIUzI1NiJ9.e30",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.!!!",
        jwt.encode(claims, "another-key-" + "k" * 32, algorithm="HS256"),
        jwt.encode({**claims, "aud": "admin-api"}, secret, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims.items() if k != "sub"}, secret, algorithm="HS256"),
        jwt.encode({**claims, "iat": "yesterday"}, secret, algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),
    ]
    for probe in probes:
        try:
            jwt.decode(probe, secret, algorithms=["HS256"], audience=tokens.AUDIENCE, issuer=tokens.ISSUER,
                       options={"require": ["exp", "iat", "sub", "iss", "aud"]})
            raise AssertionError(f"the library accepts {probe!r}")
        except jwt.InvalidTokenError as exc:
            library_says = str(exc)
        response = requests.get(f"{gateway}{c.API_PREFIX}/accounts", headers={"Authorization": f"Bearer {probe}"},
                                timeout=30)
        assert response.status_code == 401
        message = response.json()["message"]
        assert message in tokens.REASONS, message
        assert library_says not in response.text and message != library_says


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("memory_kib", ["8", "16"])
def test_an_argon2_memory_setting_the_library_refuses_stops_auth_at_start(monkeypatch, tmp_path, memory_kib):
    monkeypatch.setenv("OBSLAB_ARGON2_MEMORY_KIB", memory_kib)
    with pytest.raises(ConfigError) as refused:
        auth_app(f"sqlite:///{tmp_path / 'auth.sqlite3'}")
    message = str(refused.value)
    assert f"OBSLAB_ARGON2_MEMORY_KIB={memory_kib}" in message and "\n" not in message
    assert "at least" in message  # says what to set instead
    monkeypatch.delenv("OBSLAB_ARGON2_MEMORY_KIB")
    assert password_hasher().memory_cost >= 32  # and without it, auth would start


def test_a_week_long_token_lifetime_setting_stops_auth_at_start(monkeypatch, tmp_path):
    monkeypatch.setenv("OBSLAB_TOKEN_TTL_SECONDS", str(7 * 86400))
    with pytest.raises(ConfigError, match="OBSLAB_TOKEN_TTL_SECONDS must be between 60 and 3600"):
        auth_app(f"sqlite:///{tmp_path / 'auth.sqlite3'}")


# --- caching -------------------------------------------------------------------------------------


def test_login_answers_are_never_cached(stack, gateway):
    customer = Customer(gateway)
    answers = [login(gateway, customer.username, PASSWORD), login(gateway, customer.username, "wrong-password"),
               login(gateway, new_username(), PASSWORD),
               requests.post(f"{gateway}{API}/login", data=b"{", headers={"Content-Type": "application/json"},
                             timeout=30)]
    answers += [login(gateway, customer.username, "wrong-password") for _ in range(5)]  # ends in a 429
    direct = requests.post(f"{stack.url(c.AUTH)}/tokens", json={"username": customer.username, "password": PASSWORD},
                           headers={**service_headers(c.GATEWAY, c.AUTH), c.HEADER_CLIENT_ADDRESS: "192.0.2.50"},
                           timeout=30)
    answers.append(direct)
    assert {a.status_code for a in answers} == {200, 400, 401, 429}
    for answer in answers:
        assert answer.headers.get("Cache-Control") == "no-store", (answer.status_code, answer.headers)
        assert answer.headers.get("Pragma") == "no-cache"


def test_a_registration_flood_cannot_take_every_hashing_slot_from_logins():
    """Anyone can send sign-ups; with two slots, registrations hold at most one of them."""
    from obslab.services.auth.hashing import HashingGate, Overloaded

    gate = HashingGate(slots=2, wait_seconds=0)
    with gate.registration_slot():
        with pytest.raises(Overloaded):
            with gate.registration_slot():
                pass
        with gate.slot():          # a login still gets its hash
            assert gate.in_use == 2
    assert gate.in_use == 0
    single = HashingGate(slots=1, wait_seconds=0)
    with single.registration_slot():   # one slot cannot be split: registrations may use it
        assert single.in_use == 1
