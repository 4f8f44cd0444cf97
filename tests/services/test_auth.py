import pytest
import requests
from sqlalchemy import select

from obslab.services.auth.store import users
from obslab.services.common import tokens
from obslab import settings
from tests.support import PASSWORD, Customer

API = "/api/v1/auth"


def test_register_then_login_issues_an_expiring_bearer_token(gateway):
    customer = Customer(gateway)
    identity = tokens.verify(settings.jwt_secret(), customer.token)
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
