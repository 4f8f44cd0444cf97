import time
import uuid

import pytest
import requests
from sqlalchemy import select

from obslab import conventions as c
from obslab import secrets
from obslab.services.auth.store import users
from obslab.services.common import tokens
from tests.support import PASSWORD, Customer, service_headers

API = "/api/v1/auth"


def test_register_then_login_issues_an_expiring_bearer_token(gateway):
    customer = Customer(gateway)
    identity = tokens.verify(secrets.jwt_secret(), customer.token)
    assert identity.username == customer.username and identity.customer_id.startswith("cus_")
    login = requests.post(f"{gateway}{API}/login", json={"username": customer.username, "password": PASSWORD})
    body = login.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 3600


def test_passwords_are_stored_as_argon2id_hashes_never_in_clear(stack, gateway):
    customer = Customer(gateway)
    ctx = stack.app("auth").extensions["obslab"]
    with ctx.db.connect() as conn:
        stored = conn.execute(select(users.c.password_hash).where(users.c.username == customer.username)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_a_taken_username_is_a_409(gateway):
    customer = Customer(gateway)
    again = requests.post(f"{gateway}{API}/register", json={"username": customer.username, "password": PASSWORD})
    assert again.status_code == 409
    assert again.json()["error"] == "username_taken"


@pytest.mark.parametrize("body, field", [
    ({"username": "ab", "password": PASSWORD}, "username"),
    ({"username": "has space", "password": PASSWORD}, "username"),
    ({"username": "valid_name", "password": "short"}, "password"),
    ({"username": "valid_name"}, "password"),
    ({"username": "valid_name", "password": PASSWORD, "admin": True}, "admin"),
])
def test_registration_input_errors_name_the_field(gateway, body, field):
    response = requests.post(f"{gateway}{API}/register", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["error"] == "invalid_request"
    assert error["message"].startswith(field)


@pytest.mark.parametrize("password", ["wrong-password", ""])
def test_wrong_credentials_are_a_401_that_does_not_say_which_part_was_wrong(gateway, password):
    customer = Customer(gateway)
    for username in (customer.username, "nobody-by-that-name"):
        response = requests.post(f"{gateway}{API}/login", json={"username": username, "password": password})
        assert response.status_code == 401
        assert response.json() == {"error": "invalid_credentials", "message": "unknown username or wrong password"}


@pytest.mark.parametrize("password, problem", [
    ("Password1", "most common"),
    ("qwerty123", "most common"),
    ("Summer2024!", "most common"),
    ("{username}", "must not be the username"),
    ("my-{USERNAME}-pass", "must not contain the username"),
])
def test_a_common_password_or_the_username_in_it_is_a_400_naming_the_password(gateway, password, problem):
    username = f"u{uuid.uuid4().hex[:10]}"
    password = password.format(username=username, USERNAME=username.upper())
    response = requests.post(f"{gateway}{API}/register", json={"username": username, "password": password})
    assert response.status_code == 400
    error = response.json()
    assert error["error"] == "invalid_request" and error["message"].startswith("password: ")
    assert problem in error["message"] and error["fields"][0]["field"] == "password"
    assert password not in response.text  # the refused password is not echoed back


def test_answers_carrying_credentials_or_tokens_are_never_cached(stack, gateway):
    username = f"u{uuid.uuid4().hex[:10]}"
    credentials = {"username": username, "password": PASSWORD}
    answers = [
        requests.post(f"{gateway}{API}/register", json=credentials),
        requests.post(f"{gateway}{API}/register", json=credentials),
        requests.post(f"{gateway}{API}/login", json=credentials),
        requests.post(f"{gateway}{API}/login", json={**credentials, "password": "wrong-password"}),
        requests.post(f"{gateway}{API}/login", json={"username": username}),
        # auth says so itself, whoever forwards its answers
        requests.post(f"{stack.url('auth')}/tokens", json=credentials, headers=service_headers(c.GATEWAY, c.AUTH)),
    ]
    assert [a.status_code for a in answers] == [201, 409, 200, 401, 400, 200]
    for answer in answers:
        assert answer.headers["Cache-Control"] == "no-store", answer.url


def test_repeated_wrong_passwords_back_off_with_retry_after_and_the_wait_then_ends(stack, gateway, monkeypatch):
    throttle = stack.app("auth").extensions["obslab.auth"].throttle
    now = [time.monotonic()]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])
    customer = Customer(gateway)
    wrong = {"username": customer.username, "password": "wrong-password"}
    codes = [requests.post(f"{gateway}{API}/login", json=wrong).status_code for _ in range(5)]
    assert codes == [401] * 5
    refused = requests.post(f"{gateway}{API}/login", json={**wrong, "password": PASSWORD})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert refused.json()["error"] == "too_many_attempts" and refused.json()["retry_after_seconds"] == 30
    now[0] += 30
    assert requests.post(f"{gateway}{API}/login", json={**wrong, "password": PASSWORD}).status_code == 200
