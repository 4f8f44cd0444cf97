"""Configuration that every component resolves the same way: argument > environment > default.

Environment variables (all optional):

``OBSLAB_DATA_DIR``         state of the native lab (SQLite files, logs, spans, Prometheus data)
``OBSLAB_PORT_OFFSET``      added to every default port, to run a second lab beside the first
``OBSLAB_HOST``             address components listen on and call each other at (127.0.0.1)
``OBSLAB_<SERVICE>_URL``    base URL of a service, e.g. ``OBSLAB_ACCOUNTS_URL`` (compose sets these)
``OBSLAB_DB_URL``           MySQL/MariaDB server URL; each service gets its own database on it
``OBSLAB_<SERVICE>_DB_URL`` one service's database URL, overriding everything else
``OBSLAB_ENVIRONMENT``      ``deployment.environment`` of every span and log line (default ``lab``)
``OBSLAB_SECRETS_DIR``      the lab's generated secrets (obslab/secrets.py; default <data dir>/run/secrets)
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from obslab import conventions as c

DEFAULT_DATA_DIR = ".obslab"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_ENVIRONMENT = "lab"


class ConfigError(ValueError):
    """A setting has a value that cannot work; the message says which and how to fix it."""


def env_key(name: str) -> str:
    """``trace-sink`` -> ``TRACE_SINK`` (the form used in environment variable names)."""
    return name.upper().replace("-", "_")


def data_dir(arg: str | os.PathLike | None = None) -> Path:
    raw = arg or os.environ.get("OBSLAB_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(raw).expanduser().resolve()


# Linux hands out local ports for outgoing connections from 32768 up: a lab listening there finds
# its ports taken on any busy machine, at random.
EPHEMERAL_PORTS_START = 32768


def max_port_offset() -> int:
    """The largest offset that keeps every port of the lab below the kernel's ephemeral range."""
    return EPHEMERAL_PORTS_START - 1 - max(c.DEFAULT_PORTS.values())


def port_offset(arg: int | None = None) -> int:
    if arg is not None:
        return arg
    raw = os.environ.get("OBSLAB_PORT_OFFSET", "0")
    try:
        offset = int(raw)
    except ValueError:
        raise ConfigError(f"OBSLAB_PORT_OFFSET must be an integer, got {raw!r}") from None
    if not 0 <= offset <= max_port_offset():
        raise ConfigError(f"OBSLAB_PORT_OFFSET must be between 0 and {max_port_offset()} (the lab's ports stay "
                          f"below the kernel's ephemeral range, {EPHEMERAL_PORTS_START}+), got {offset}")
    return offset


def host() -> str:
    return os.environ.get("OBSLAB_HOST", DEFAULT_HOST)


def port(component: str, offset: int | None = None) -> int:
    return c.DEFAULT_PORTS[component] + port_offset(offset)


def service_url(component: str) -> str:
    """Base URL at which other components reach ``component``."""
    override = os.environ.get(f"OBSLAB_{env_key(component)}_URL")
    if override:
        return override.rstrip("/")
    return f"http://{host()}:{port(component)}"


def environment() -> str:
    return os.environ.get("OBSLAB_ENVIRONMENT", DEFAULT_ENVIRONMENT)


def int_setting(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value


def float_setting(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def repo_root() -> Path:
    """The source tree (prometheus/, runbooks/ ... live there); obslab is installed editable."""
    override = os.environ.get("OBSLAB_REPO_ROOT")
    return Path(override).resolve() if override else Path(__file__).resolve().parent.parent


# The lab's one duration syntax, Prometheus' own (a rule's ``for:``, a range, an interval):
# one or more <number><unit>, units ms s m h d w y. People may also write a bare number of
# seconds or a decimal (``90``, ``2.5m``); what Prometheus is given is checked against
# PROMETHEUS_DURATION, which takes integers with a unit only.
PROMETHEUS_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|[ywdhms]?)")
_UNIT_SECONDS = {"y": 365 * 86400.0, "w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0,
                 "ms": 0.001, "": 1.0}


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1h30m"``, ``"1w"``, ``"500ms"`` -> seconds.

    >>> parse_duration("1h30m"), parse_duration("45"), parse_duration("2.5m"), parse_duration("1w")
    (5400.0, 45.0, 150.0, 604800.0)
    >>> parse_duration("0s", allow_zero=True)
    0.0
    """
    raw = text.strip().lower()
    position, total = 0, 0.0
    while position < len(raw):
        match = _DURATION_PART.match(raw, position)
        if match is None or match.end() == position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
        if not match.group(2):
            break  # a bare number only stands alone
    if not raw or position != len(raw):
        raise ConfigError(f"duration {text!r} is not understood; write e.g. 90s, 10m, 1h30m or 1w")
    if total < 0 or (total == 0 and not allow_zero):
        raise ConfigError(f"duration must be above zero, got {text!r}")
    return total
