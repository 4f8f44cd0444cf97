"""Service-to-service trust: short-lived signed service tokens and the gateway's customer assertion.

Every internal call carries ``X-Obslab-Service-Token``: a JWT the *caller* signed with its own
Ed25519 key (``iss`` = the caller, ``aud`` = the one service it is meant for, two minutes of
life). The callee verifies it with the caller's public key and checks the caller against the
topology's endpoint table (:mod:`obslab.topology`): no credential is a 401, a service that may not
call the endpoint a 403. Asymmetric keys, so that a service that verifies tokens cannot mint
them, and a token sent to one service is useless at another (``aud``).

A call on a customer's behalf also carries ``X-Obslab-Customer``: an assertion the *gateway*
signed after it verified the customer's access token. Services in between forward it unchanged;
nobody but the gateway can produce one, and a bare customer id in a header means nothing.

Why signed tokens rather than mTLS: they work the same over the compose network and on
loopback, need no CA or TLS termination in every hop, carry the customer context a certificate
cannot, and are verified locally without a network call. Both sides cache: a signer reuses its
token for a minute, a verifier remembers a verified token until it expires, so the steady-state
cost is a dictionary lookup per call.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from obslab import conventions as c
from obslab import secrets

ALGORITHM = "EdDSA"
SERVICE_TOKEN_SECONDS = 120
CUSTOMER_ASSERTION_SECONDS = 120
# A cached token is replaced once less than this is left, so a receiver never sees one expire in flight.
REFRESH_MARGIN_SECONDS = 60
# No token this lab accepts lives longer than this, whatever its signature says.
MAX_LIFETIME_SECONDS = 300
LEEWAY_SECONDS = 5
CUSTOMER_AUDIENCE = "obslab-services"
SERVICE_TYPE = "service"
CUSTOMER_TYPE = "customer"
_CACHE_SIZE = 10_000


# Error codes of a refused internal call. A caller that gets one back from a peer has a broken
# deployment, not a bad request: obslab/platform/http.py answers its own client with a 502.
SERVICE_CREDENTIAL_MISSING = "service_credential_missing"
CUSTOMER_ASSERTION_MISSING = "customer_assertion_missing"
INVALID_SERVICE_TOKEN = "invalid_service_token"
INVALID_CUSTOMER_ASSERTION = "invalid_customer_assertion"
CALLER_NOT_ALLOWED = "caller_not_allowed"
INTERNAL_AUTH_ERRORS = frozenset({SERVICE_CREDENTIAL_MISSING, CUSTOMER_ASSERTION_MISSING, INVALID_SERVICE_TOKEN,
                                  INVALID_CUSTOMER_ASSERTION, CALLER_NOT_ALLOWED})


class IdentityError(Exception):
    """A credential is missing, forged, expired or meant for someone else (a 401)."""


def _load_private(path: Path, component: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise secrets.SecretError(f"the signing key of {component} is missing ({path}); start the lab with "
                                  "`obslab up` (it generates every key) or run `obslab secrets init`") from None
    except ValueError:
        raise secrets.SecretError(f"the signing key of {component} ({path}) is not a PEM Ed25519 key; "
                                  "delete it and run `obslab secrets init`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise secrets.SecretError(f"the signing key of {component} ({path}) is not an Ed25519 key")
    return key


def load_public_keys(directory: Path | None = None) -> dict[str, Ed25519PublicKey]:
    """Every component's public key, by component name."""
    folder = (directory or secrets.secrets_dir()) / secrets.PUBLIC_KEYS_DIR
    keys: dict[str, Ed25519PublicKey] = {}
    if not folder.is_dir():
        raise secrets.SecretError(f"the lab's public keys are missing ({folder}); start the lab with "
                                  "`obslab up` or run `obslab secrets init`")
    for path in sorted(folder.glob("*.pem")):
        key = serialization.load_pem_public_key(path.read_bytes())
        if isinstance(key, Ed25519PublicKey):
            keys[path.stem] = key
    return keys


class _Expiring:
    """A bounded map of values that stop counting at their own expiry time."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, now: float, margin: float = 0.0) -> object | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] - margin <= now:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: str, value: object, expires: float) -> None:
        with self._lock:
            self._items[key] = (expires, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class Signer:
    """One component's signing side.

    >>> signer = Signer("transactions", Ed25519PrivateKey.generate())
    >>> signer.service_token("accounts") == signer.service_token("accounts")   # cached
    True
    """

    def __init__(self, component: str, key: Ed25519PrivateKey, clock: Callable[[], float] = time.time) -> None:
        self.component = component
        self._key = key
        self.clock = clock
        self._tokens = _Expiring(256)
        self._assertions = _Expiring()

    @classmethod
    def load(cls, component: str, directory: Path | None = None) -> Signer:
        path = (directory or secrets.secrets_dir()) / secrets.private_key_file(component)
        return cls(component, _load_private(path, component))

    def _sign(self, claims: dict, lifetime: int) -> tuple[str, float]:
        now = int(self.clock())
        expires = now + lifetime
        token = jwt.encode({**claims, "iat": now, "nbf": now, "exp": expires}, self._key, algorithm=ALGORITHM,
                           headers={"kid": self.component})
        return token, float(expires)

    def service_token(self, audience: str) -> str:
        """The token that introduces this component to ``audience``."""
        now = self.clock()
        cached = self._tokens.get(audience, now, REFRESH_MARGIN_SECONDS)
        if cached is not None:
            return cached  # type: ignore[return-value]
        token, expires = self._sign({"iss": self.component, "sub": self.component, "aud": audience,
                                     "typ": SERVICE_TYPE}, SERVICE_TOKEN_SECONDS)
        self._tokens.put(audience, token, expires)
        return token

    def headers(self, audience: str) -> dict[str, str]:
        return {c.HEADER_SERVICE_TOKEN: self.service_token(audience)}

    def customer_assertion(self, customer_id: str) -> str:
        """The gateway's word that ``customer_id`` is the authenticated caller."""
        now = self.clock()
        cached = self._assertions.get(customer_id, now, REFRESH_MARGIN_SECONDS)
        if cached is not None:
            return cached  # type: ignore[return-value]
        token, expires = self._sign({"iss": self.component, "sub": customer_id, "aud": CUSTOMER_AUDIENCE,
                                     "typ": CUSTOMER_TYPE}, CUSTOMER_ASSERTION_SECONDS)
        self._assertions.put(customer_id, token, expires)
        return token


class Verifier:
    """One component's verifying side: whose token is this, and which customer does it speak for."""

    def __init__(self, component: str, public_keys: Mapping[str, Ed25519PublicKey],
                 clock: Callable[[], float] = time.time, assertion_issuer: str = c.GATEWAY) -> None:
        self.component = component
        self.public_keys = dict(public_keys)
        self.clock = clock
        self.assertion_issuer = assertion_issuer
        self._verified = _Expiring()

    @classmethod
    def load(cls, component: str, directory: Path | None = None) -> Verifier:
        return cls(component, load_public_keys(directory))

    def _claims(self, token: str, audience: str, typ: str, issuer: str | None = None) -> dict:
        now = self.clock()
        cache_key = f"{typ}:{token}"
        cached = self._verified.get(cache_key, now)
        if cached is not None:
            return cached  # type: ignore[return-value]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise IdentityError("malformed token") from None
        signer = header.get("kid")
        if issuer is not None and signer != issuer:
            raise IdentityError(f"a {typ} credential must be signed by {issuer}")
        key = self.public_keys.get(signer) if isinstance(signer, str) else None
        if key is None:
            raise IdentityError("token signed by an unknown component")
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=audience, leeway=LEEWAY_SECONDS,
                                options={"require": ["iss", "sub", "aud", "iat", "exp", "typ"]})
        except jwt.ExpiredSignatureError:
            raise IdentityError("token expired") from None
        except jwt.InvalidAudienceError:
            raise IdentityError("token meant for another service") from None
        except jwt.InvalidTokenError:
            raise IdentityError("invalid token") from None
        if claims["iss"] != signer or claims["typ"] != typ:
            raise IdentityError("invalid token")
        if not isinstance(claims["iat"], int) or not isinstance(claims["exp"], int) \
                or claims["exp"] - claims["iat"] > MAX_LIFETIME_SECONDS or claims["iat"] > now + LEEWAY_SECONDS:
            raise IdentityError("token lifetime outside what this lab accepts")
        self._verified.put(cache_key, claims, float(claims["exp"]) + LEEWAY_SECONDS)
        return claims

    def caller(self, token: str) -> str:
        """The component that sent this service token to this component."""
        return str(self._claims(token, self.component, SERVICE_TYPE)["iss"])

    def customer(self, assertion: str) -> str:
        """The customer the gateway vouched for."""
        claims = self._claims(assertion, CUSTOMER_AUDIENCE, CUSTOMER_TYPE, issuer=self.assertion_issuer)
        return str(claims["sub"])


@dataclass(frozen=True)
class ServiceIdentity:
    """A component's own signer and verifier, loaded once from the lab's secrets."""

    signer: Signer
    verifier: Verifier

    @classmethod
    def load(cls, component: str, directory: Path | None = None) -> ServiceIdentity:
        return cls(Signer.load(component, directory), Verifier.load(component, directory))
