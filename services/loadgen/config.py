"""The load generator's settings: argument > environment > default, validated in one place.

The environment variables (all optional; ``obslab up`` passes the lab's through) are the
``OBSLAB_LOAD_*`` ones declared in obslab/settings.py, with their defaults (docs/settings.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from obslab import conventions as c
from obslab import secrets, settings
from obslab.services.loadgen.mix import JourneyMix
from obslab.settings import ConfigError

DEFAULT_RATE: float = settings.LOAD_RATE.default
DEFAULT_CONCURRENCY: int = settings.LOAD_CONCURRENCY.default
DEFAULT_USERS: int = settings.LOAD_USERS.default
DEFAULT_THINK_SECONDS: float = settings.LOAD_THINK_SECONDS.default
DEFAULT_SEED: int = settings.LOAD_SEED.default
DEFAULT_RETRY_SHARE: float = settings.LOAD_RETRY_SHARE.default
DEFAULT_TIMEOUT_SECONDS: float = settings.LOAD_TIMEOUT_SECONDS.default
DEFAULT_USER_PREFIX: str = settings.LOAD_USER_PREFIX.default
DEFAULT_FLOOD_RAMP_SECONDS: float = settings.LOAD_FLOOD_RAMP_SECONDS.default
DEFAULT_FLOOD_LOGIN_RPS: float = settings.LOAD_FLOOD_LOGIN_RPS.default

MAX_RATE = 1000.0
MAX_CONCURRENCY = 256
MAX_USERS = 99_999
MAX_FLOOD_THREADS = 128
USERNAME_DIGITS = 5
_PREFIX_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,20}$")


def lab_password() -> str:
    """The simulated customers' password: the lab's own (generated per deployment; they hold money)."""
    password = secrets.loadgen_customer_password()
    if password is None:
        raise ConfigError("no password for the simulated customers: run the generator inside a lab "
                          f"(its data directory holds one) or set {settings.LOAD_PASSWORD.name}")
    return password


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
            "rate": settings.LOAD_RATE.get(),
            "concurrency": settings.LOAD_CONCURRENCY.get(),
            "users": settings.LOAD_USERS.get(),
            "think_time": settings.LOAD_THINK_SECONDS.get(),
            "flat": settings.LOAD_FLAT.get(),
            "seed": settings.LOAD_SEED.get(),
            "mix": JourneyMix.parse(settings.LOAD_MIX.get()),
            "retry_share": settings.LOAD_RETRY_SHARE.get(),
            "timeout": settings.LOAD_TIMEOUT_SECONDS.get(),
            "user_prefix": settings.LOAD_USER_PREFIX.get(),
            "password": settings.LOAD_PASSWORD.get() or lab_password(),
            "flood_threads": settings.LOAD_FLOOD_THREADS.get() or None,
            "flood_ramp_seconds": settings.LOAD_FLOOD_RAMP_SECONDS.get(),
            "flood_login_rps": settings.LOAD_FLOOD_LOGIN_RPS.get(),
        }
        values.update({name: value for name, value in arguments.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]

    def username(self, index: int) -> str:
        return f"{self.user_prefix}{index:0{USERNAME_DIGITS}d}"


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:  # also refuses NaN
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value}")
