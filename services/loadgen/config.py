"""The load generator's settings: argument > environment > default, validated in one place.

Environment variables (all optional; ``obslab up`` passes the lab's through):

``OBSLAB_LOAD_RATE``               base journey starts per second before the diurnal shape (2)
``OBSLAB_LOAD_CONCURRENCY``        worker threads, i.e. requests in flight at most (8)
``OBSLAB_LOAD_USERS``              simulated customers (200)
``OBSLAB_LOAD_THINK_SECONDS``      mean think time between the steps of a journey (2.0)
``OBSLAB_LOAD_FLAT``               ``1``: no diurnal shape, the base rate all day
``OBSLAB_LOAD_SEED``               seed of identities, addresses and choices (1)
``OBSLAB_LOAD_MIX``                journey weights, e.g. ``transfer=50,pay=50`` (default mix)
``OBSLAB_LOAD_RETRY_SHARE``        share of transfers sent twice with the same Idempotency-Key (0.05)
``OBSLAB_LOAD_TIMEOUT_SECONDS``    client timeout of one request (10)
``OBSLAB_LOAD_USER_PREFIX``        usernames are PREFIX + 5 digits (``loadgen-``)
``OBSLAB_LOAD_PASSWORD``           password of every simulated customer (default: the lab's own)
``OBSLAB_LOAD_FLOOD_THREADS``      sender threads of a DDoS flood (default: from its rps)
``OBSLAB_LOAD_FLOOD_RAMP_SECONDS`` how long a flood takes to reach its full rate (20)
``OBSLAB_LOAD_FLOOD_LOGIN_RPS``    cap on well-formed junk logins per second in a flood (0.5)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from obslab import conventions as c
from obslab import secrets, settings
from obslab.services.loadgen.mix import JourneyMix
from obslab.settings import ConfigError

DEFAULT_RATE = 2.0
DEFAULT_CONCURRENCY = 8
DEFAULT_USERS = 200
DEFAULT_THINK_SECONDS = 2.0
DEFAULT_SEED = 1
DEFAULT_RETRY_SHARE = 0.05
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_USER_PREFIX = "loadgen-"

def lab_password() -> str:
    """The simulated customers' password: the lab's own (generated per deployment; they hold money)."""
    password = secrets.loadgen_customer_password()
    if password is None:
        raise ConfigError("no password for the simulated customers: run the generator inside a lab "
                          "(its data directory holds one) or set OBSLAB_LOAD_PASSWORD")
    return password

DEFAULT_FLOOD_RAMP_SECONDS = 20.0
# Each well-formed login costs the auth service an Argon2 verification (~0.25 s of CPU): an
# uncapped credential-stuffing share would stop a 2-core lab outright instead of stressing it.
DEFAULT_FLOOD_LOGIN_RPS = 0.5

MAX_RATE = 1000.0
MAX_CONCURRENCY = 256
MAX_USERS = 99_999
MAX_FLOOD_THREADS = 128
USERNAME_DIGITS = 5
_PREFIX_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,20}$")
def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class LoadConfig:
    gateway_url: str
    accounts_url: str
    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    users: int = DEFAULT_USERS
    think_time: float = DEFAULT_THINK_SECONDS
    flat: bool = False
    seed: int = DEFAULT_SEED
    mix: JourneyMix = field(default_factory=JourneyMix.default)
    duration: float | None = None          # seconds; stop starting journeys after it
    max_requests: int | None = None        # stop starting journeys once this many were sent
    retry_share: float = DEFAULT_RETRY_SHARE
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    user_prefix: str = DEFAULT_USER_PREFIX
    password: str = field(default_factory=lab_password)
    flood_threads: int | None = None
    flood_ramp_seconds: float = DEFAULT_FLOOD_RAMP_SECONDS
    flood_login_rps: float = DEFAULT_FLOOD_LOGIN_RPS

    def __post_init__(self) -> None:
        for name, url in (("gateway URL", self.gateway_url), ("accounts URL", self.accounts_url)):
            if not re.match(r"^https?://[^/\s]+", url or ""):
                raise ConfigError(f"{name} must look like http://HOST:PORT, got {url!r}")
        object.__setattr__(self, "gateway_url", self.gateway_url.rstrip("/"))
        object.__setattr__(self, "accounts_url", self.accounts_url.rstrip("/"))
        _check_range("rate (journeys per second)", self.rate, 0, MAX_RATE)
        _check_range("concurrency", self.concurrency, 1, MAX_CONCURRENCY)
        _check_range("users", self.users, 1, MAX_USERS)
        _check_range("think time (seconds)", self.think_time, 0, 600)
        _check_range("retry share", self.retry_share, 0, 1)
        _check_range("request timeout (seconds)", self.timeout, 0.1, 300)
        _check_range("flood ramp (seconds)", self.flood_ramp_seconds, 0, 3600)
        _check_range("flood login rate", self.flood_login_rps, 0, 10_000)
        if self.flood_threads is not None:
            _check_range("flood threads", self.flood_threads, 1, MAX_FLOOD_THREADS)
        if self.duration is not None and not self.duration > 0:
            raise ConfigError(f"duration must be above zero, got {self.duration}")
        if self.max_requests is not None and self.max_requests < 1:
            raise ConfigError(f"requests must be at least 1, got {self.max_requests}")
        if not _PREFIX_PATTERN.match(self.user_prefix):
            raise ConfigError(f"user prefix {self.user_prefix!r} must be 1-21 characters of a-z, 0-9, "
                              "'_', '.', '-', starting with a letter or digit")
        if not 8 <= len(self.password) <= 128:
            raise ConfigError("the simulated customers' password must be 8-128 characters long")

    @classmethod
    def from_environment(cls, **arguments: object) -> LoadConfig:
        """Arguments that are not None win over ``OBSLAB_LOAD_*`` variables, which win over defaults."""
        values: dict[str, object] = {
            "gateway_url": settings.service_url(c.GATEWAY),
            "accounts_url": settings.service_url(c.ACCOUNTS),
            "rate": settings.float_setting("OBSLAB_LOAD_RATE", DEFAULT_RATE),
            "concurrency": settings.int_setting("OBSLAB_LOAD_CONCURRENCY", DEFAULT_CONCURRENCY, minimum=1),
            "users": settings.int_setting("OBSLAB_LOAD_USERS", DEFAULT_USERS, minimum=1),
            "think_time": settings.float_setting("OBSLAB_LOAD_THINK_SECONDS", DEFAULT_THINK_SECONDS),
            "flat": _flag("OBSLAB_LOAD_FLAT"),
            "seed": settings.int_setting("OBSLAB_LOAD_SEED", DEFAULT_SEED),
            "mix": JourneyMix.parse(os.environ.get("OBSLAB_LOAD_MIX")),
            "retry_share": settings.float_setting("OBSLAB_LOAD_RETRY_SHARE", DEFAULT_RETRY_SHARE),
            "timeout": settings.float_setting("OBSLAB_LOAD_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS),
            "user_prefix": os.environ.get("OBSLAB_LOAD_USER_PREFIX") or DEFAULT_USER_PREFIX,
            "password": os.environ.get("OBSLAB_LOAD_PASSWORD") or lab_password(),
            "flood_threads": settings.int_setting("OBSLAB_LOAD_FLOOD_THREADS", 0) or None,
            "flood_ramp_seconds": settings.float_setting("OBSLAB_LOAD_FLOOD_RAMP_SECONDS",
                                                         DEFAULT_FLOOD_RAMP_SECONDS),
            "flood_login_rps": settings.float_setting("OBSLAB_LOAD_FLOOD_LOGIN_RPS", DEFAULT_FLOOD_LOGIN_RPS),
        }
        values.update({name: value for name, value in arguments.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]

    def username(self, index: int) -> str:
        return f"{self.user_prefix}{index:0{USERNAME_DIGITS}d}"


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:  # also refuses NaN
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value}")
