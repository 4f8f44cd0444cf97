"""The journeys as a funnel: runs started, each step reached once per run, and how each run ended.

The journeys run against a fake gateway (answers chosen by the test), through the generator's own
JourneyRun and Recorder, so what is counted here is what the lab's load generator counts.
"""

from __future__ import annotations

import http.client
import json
import random
from decimal import Decimal
from urllib.parse import urlsplit

import pytest

from obslab import conventions as c
from obslab.conventions.loadgen import JOURNEY_ENDINGS, JOURNEY_OUTCOMES
from obslab.services.loadgen import journeys, mix
from obslab.services.loadgen.config import LoadConfig
from obslab.services.loadgen.generator import JourneyRun, LoadGenerator
from obslab.services.loadgen.identities import UserIdentity
from obslab.services.loadgen.journeys import JOURNEY_FUNCTIONS, JOURNEY_FUNNELS, Session, Toolkit
from obslab.services.loadgen.mix import JourneyMix
from obslab.services.loadgen.population import User
from obslab.services.loadgen.recorder import Recorder
from obslab.services.loadgen.transport import Reply, TransportError
from obslab.telemetry import MetricSet

PASSWORD = "funnel-test-password"
API = c.API_PREFIX


class FakeGateway:
    """Answers the journeys' requests as a healthy bank does; ``fail`` makes some go wrong."""

    def __init__(self, fail: float = 0.0, rng: random.Random | None = None) -> None:
        self.fail = fail
        self.rng = rng or random.Random(0)
        self.sent: list[tuple[str, str]] = []
        self._keys: dict[str, dict] = {}
        self._registered: dict[str, str] = {}

    def request_json(self, method: str, path: str, payload=None, headers=None) -> Reply:
        self.sent.append((method, path))
        if self.fail and self.rng.random() < self.fail:
            if self.rng.random() < 0.5:
                raise TransportError("timeout", "no answer within 1s", 1.0)
            return self._reply(self.rng.choice([429, 503, 422]), {"error": "broken"})
        route = urlsplit(path).path
        if route == f"{API}/auth/login":
            if payload["password"] not in (PASSWORD, self._registered.get(payload["username"])):
                return self._reply(401, {"error": "invalid_credentials"})
            return self._reply(200, {"access_token": "token", "token_type": "Bearer", "expires_in": 900})
        if route == f"{API}/auth/register":
            self._registered[payload["username"]] = payload["password"]
            return self._reply(201, {"id": "cus_new"})
        if route == f"{API}/accounts":
            if method == "POST":
                return self._reply(201, {"id": "acc_new", "type": "checking", "currency": "EUR", "balance": "0.00"})
            return self._reply(200, [
                {"id": "acc_checking", "type": "checking", "currency": "EUR", "balance": "1000.00"},
                {"id": "acc_savings", "type": "savings", "currency": "EUR", "balance": "5000.00"},
            ])
        if route.startswith(f"{API}/accounts/"):
            return self._reply(200, {"id": route.rsplit("/", 1)[1], "currency": "EUR", "balance": "1.00"})
        if route == f"{API}/transfers" and method == "GET":
            return self._reply(200, [{"id": "trf_1", "from_account": "acc_checking", "status": "completed"}])
        if route.startswith(f"{API}/transfers/"):
            return self._reply(200, {"id": "trf_1", "status": "completed"})
        if route in (f"{API}/transfers", f"{API}/payments"):
            key = headers[c.HEADER_IDEMPOTENCY_KEY]
            if key in self._keys:
                return self._reply(201, self._keys[key], replayed=True)
            body = self._keys[key] = {"id": f"mov_{len(self._keys)}", "status": "completed"}
            return self._reply(201, body)
        raise AssertionError(f"the fake gateway does not know {method} {path}")

    @staticmethod
    def _reply(status: int, body, replayed: bool = False) -> Reply:
        headers = http.client.HTTPMessage()
        if replayed:
            headers[c.HEADER_IDEMPOTENT_REPLAYED] = "true"
        return Reply(status, headers, json.dumps(body).encode(), 0.01)


def _user(index: int) -> User:
    identity = UserIdentity(index=index, username=f"funnel-{index}", addresses=(f"203.0.113.{index + 1}",),
                            user_agent="test", has_savings=True, opening_checking=Decimal("1000.00"),
                            opening_savings=Decimal("5000.00"), activity=1.0)
    return User(identity, accounts={"checking": f"acc_checking{index}", "savings": f"acc_savings{index}"})


def _kit(gateway: FakeGateway, recorder: Recorder, users: list[User], **config) -> Toolkit:
    settings = dict(think_time=0.0, password=PASSWORD, retry_share=0.0)
    settings.update(config)
    return Toolkit(LoadConfig("http://127.0.0.1:1", "http://127.0.0.1:2", **settings), gateway,
                   provisioner=None, recorder=recorder, customers=lambda: users, clock=lambda: 1000.0)


def _run(kit: Toolkit, kind: str, user: User | None, seed: int = 1) -> str:
    """One run of journey ``kind`` to its end, as the generator's workers run it; its outcome."""
    run = JourneyRun(kind, JOURNEY_FUNCTIONS[kind](Session(kit, user, random.Random(seed), kind)))
    while run.advance() is not None:
        pass
    kit.recorder.journey(run.kind, run.outcome, run.problem)
    return run.outcome


def _reached(recorder: Recorder, kind: str) -> dict[str, float]:
    registry = recorder.metrics.registry
    return {step: registry.get_sample_value(c.LOADGEN_STEPS_REACHED.name, {"journey": kind, "step": step}) or 0.0
            for step in journeys.JOURNEY_STEPS}


def _recorder() -> Recorder:
    return Recorder(MetricSet(process_metrics=False))


def test_each_step_counts_once_per_run_however_often_it_is_sent():
    recorder, gateway = _recorder(), FakeGateway()
    users = [_user(0), _user(1)]
    kit = _kit(gateway, recorder, users, retry_share=1.0)   # every transfer is sent twice with its key
    assert _run(kit, mix.TRANSFER, users[0]) == "ok"
    sent = [path for _, path in gateway.sent]
    assert sent.count(f"{API}/accounts") == 2                # listed before and after the transfer
    reached = _reached(recorder, mix.TRANSFER)
    assert {step: n for step, n in reached.items() if n} == {
        journeys.LOGIN: 1, journeys.LIST_ACCOUNTS: 1, journeys.TRANSFER: 1, journeys.TRANSFER_RETRY: 1}
    registry = recorder.metrics.registry
    assert registry.get_sample_value(c.LOADGEN_REQUESTS.name, {"step": "list_accounts", "outcome": "ok"}) == 2
    assert registry.get_sample_value(c.LOADGEN_JOURNEYS.name, {"journey": "transfer", "outcome": "ok"}) == 1


def test_a_customer_still_signed_in_passes_the_login_step_without_a_login_request():
    recorder, gateway = _recorder(), FakeGateway()
    user = _user(0)
    kit = _kit(gateway, recorder, [user])
    _run(kit, mix.PAY, user, seed=1)
    _run(kit, mix.PAY, user, seed=2)          # the token of the first run is still valid
    assert [path for _, path in gateway.sent].count(f"{API}/auth/login") == 1
    reached = _reached(recorder, mix.PAY)
    assert (reached[journeys.LOGIN], reached[journeys.LIST_ACCOUNTS], reached[journeys.PAYMENT]) == (2, 2, 2)


def test_a_step_that_got_no_answer_was_reached_and_the_run_failed():
    recorder = _recorder()
    gateway = FakeGateway(fail=1.0, rng=random.Random(5))    # nothing answers as it should
    user = _user(0)
    outcome = _run(_kit(gateway, recorder, [user]), mix.CHECK_BALANCES, user)
    assert outcome in JOURNEY_ENDINGS["failed"]
    reached = _reached(recorder, mix.CHECK_BALANCES)
    assert reached[journeys.LOGIN] == 1 and reached[journeys.LIST_ACCOUNTS] == 0


def test_a_customer_who_gives_up_after_a_failed_login_is_abandoned():
    recorder, gateway = _recorder(), FakeGateway()
    user = _user(0)
    kit = _kit(gateway, recorder, [user])
    outcomes = [_run(kit, mix.FAILED_LOGIN, user, seed) for seed in range(40)]
    assert {"ok", "abandoned"} <= set(outcomes) <= {"ok", "abandoned"}
    reached = _reached(recorder, mix.FAILED_LOGIN)
    assert reached[journeys.FAILED_LOGIN] == 40
    # Only the customers who tried again got further: the funnel's second step is the ok ones.
    assert reached[journeys.LOGIN] == reached[journeys.LIST_ACCOUNTS] == outcomes.count("ok")


@pytest.mark.parametrize("kind", mix.JOURNEYS)
def test_every_run_reaches_a_prefix_of_its_journeys_funnel(kind):
    """A run never skips a step of its funnel, so the funnel's counts never grow from one step to the next."""
    funnel = JOURNEY_FUNNELS[kind]
    rng = random.Random(kind)
    users = [_user(i) for i in range(3)]
    for seed in range(60):
        recorder = _recorder()
        gateway = FakeGateway(fail=rng.choice([0.0, 0.05, 0.3]), rng=random.Random(seed))
        if rng.random() < 0.5:
            for user in users:
                user.forget_token()
        user = rng.choice(users) if kind in journeys.NEEDS_CUSTOMER else None
        outcome = _run(_kit(gateway, recorder, users, retry_share=0.3), kind, user, seed)
        assert outcome in JOURNEY_OUTCOMES
        reached = [step for step, n in _reached(recorder, kind).items() if n]
        assert all(n <= 1 for n in _reached(recorder, kind).values())
        assert set(reached) <= set(funnel), (kind, reached)
        assert funnel[:len(reached)] == tuple(s for s in funnel if s in reached), (kind, reached, seed)


def test_every_outcome_but_dropped_is_exactly_one_ending():
    ended = [outcome for outcomes in JOURNEY_ENDINGS.values() for outcome in outcomes]
    assert sorted(ended) == sorted(set(JOURNEY_OUTCOMES) - {"dropped"})
    assert set(JOURNEY_ENDINGS) == {"completed", "abandoned", "failed"}


def test_the_generator_counts_starts_and_declares_the_funnel_at_zero_before_any_event():
    config = LoadConfig("http://127.0.0.1:1", "http://127.0.0.1:2", users=2, password=PASSWORD, think_time=0.0,
                        mix=JourneyMix({mix.REGISTER: 1}))   # no customer needed: nobody is set up here
    generator = LoadGenerator(config, metrics=MetricSet(process_metrics=False))
    registry = generator.recorder.metrics.registry

    def value(spec, **labels):
        return registry.get_sample_value(spec.name, labels)

    assert value(c.LOADGEN_JOURNEYS_STARTED, journey=mix.REGISTER) == 0
    for step in JOURNEY_FUNNELS[mix.REGISTER]:
        assert value(c.LOADGEN_STEPS_REACHED, journey=mix.REGISTER, step=step) == 0
    for outcome in JOURNEY_OUTCOMES:
        assert value(c.LOADGEN_JOURNEYS, journey=mix.REGISTER, outcome=outcome) == 0
    assert value(c.LOADGEN_JOURNEYS_STARTED, journey=mix.TRANSFER) is None    # not in this mix

    generator.kit.gateway = FakeGateway()
    generator._start_journey(random.Random(3))
    assert value(c.LOADGEN_JOURNEYS_STARTED, journey=mix.REGISTER) == 1
    run = generator._ready.popleft()
    while run.advance() is not None:
        pass
    assert run.outcome == "ok"
    assert [value(c.LOADGEN_STEPS_REACHED, journey=mix.REGISTER, step=step) for step in JOURNEY_FUNNELS[mix.REGISTER]] \
        == [1, 1, 1, 1]
