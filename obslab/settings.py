"""Configuration that every component resolves the same way: argument > environment > default.

Every ``OBSLAB_*`` environment variable is declared once, in :data:`SETTINGS` below (name, type,
default, bounds, one line of documentation), and read through its declaration
(:meth:`Setting.get`). The reference, generated from that table, is docs/settings.md
(``obslab generate``); a test fails when code names a variable that is not declared.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from obslab import topology


class ConfigError(ValueError):
    """A setting has a value that cannot work; the message says which and how to fix it."""


def env_key(name: str) -> str:
    """``trace-sink`` -> ``TRACE_SINK`` (the form used in environment variable names)."""
    return name.upper().replace("-", "_")


# Linux hands out local ports for outgoing connections from 32768 up: a lab listening there finds
# its ports taken on any busy machine, at random.
EPHEMERAL_PORTS_START = 32768


def max_port_offset() -> int:
    """The largest offset that keeps every port of the lab below the kernel's ephemeral range."""
    return EPHEMERAL_PORTS_START - 1 - max(topology.DEFAULT_PORTS.values())


# --- declarations -------------------------------------------------------------------------------

# What a value is read as: text (str, url), a path (~ expanded), a number (int, float: checked
# against the bounds) or a flag (bool: 1, true, yes or on).
KINDS = ("str", "url", "path", "int", "float", "bool")
# In a pattern's name: one variable per component, e.g. OBSLAB_<SERVICE>_URL -> OBSLAB_ACCOUNTS_URL.
SERVICE = "<SERVICE>"
_UNSET: Any = object()


@dataclass(frozen=True)
class Setting:
    """One ``OBSLAB_*`` environment variable. Unset or empty, it has its ``default``.

    ``default_doc`` says in the docs what the default is when the reader computes it (declared
    ``default`` None; the reader passes it to :meth:`get`); ``bound_note`` follows the bounds in
    the out-of-bounds message (why they are what they are)."""

    name: str
    kind: str
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    default_doc: str | None = None
    bound_note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not re.fullmatch(r"OBSLAB_(<SERVICE>_)?[A-Z0-9][A-Z0-9_]*", self.name):
            raise ValueError(f"{self.name!r} is not an OBSLAB_* variable name")
        if (self.minimum is not None or self.maximum is not None) and self.kind not in ("int", "float"):
            raise ValueError(f"{self.name}: only numbers have bounds")

    @property
    def is_pattern(self) -> bool:
        return SERVICE in self.name

    def of(self, component: str) -> Setting:
        """A pattern's variable for one component: ``SERVICE_URL.of("trace-sink")`` is
        ``OBSLAB_TRACE_SINK_URL``."""
        if not self.is_pattern:
            raise TypeError(f"{self.name} is not a pattern")
        return replace(self, name=self.name.replace(SERVICE, env_key(component)))

    def raw(self) -> str | None:
        """The text set in the environment; None when unset or empty."""
        if self.is_pattern:
            raise TypeError(f"{self.name} is a pattern: read .of(component)")
        return os.environ.get(self.name) or None

    def get(self, default: Any = _UNSET) -> Any:
        """The value from the environment, parsed and checked (a :class:`ConfigError` naming the
        variable otherwise), else the declared default, or ``default`` when given (a default the
        reader computes)."""
        if self.is_pattern:
            raise TypeError(f"{self.name} is a pattern: read .of(component)")
        fallback = self.default if default is _UNSET else default
        if self.kind == "int":
            return int_setting(self.name, fallback, minimum=self.minimum, maximum=self.maximum,
                               note=self.bound_note)
        if self.kind == "float":
            return float_setting(self.name, fallback,
                                 minimum=None if self.minimum is None else float(self.minimum),
                                 maximum=None if self.maximum is None else float(self.maximum),
                                 note=self.bound_note)
        raw = self.raw()
        if self.kind == "bool":
            return fallback if raw is None else raw.strip().lower() in ("1", "true", "yes", "on")
        if self.kind == "path":
            value = raw if raw is not None else fallback
            return None if value is None else Path(value).expanduser()
        return raw if raw is not None else fallback


# --- where the lab runs
DATA_DIR = Setting("OBSLAB_DATA_DIR", "path", ".obslab",
                   "state of the native lab: SQLite files, logs, spans, Prometheus data (`--data-dir` wins)")
PORT_OFFSET = Setting("OBSLAB_PORT_OFFSET", "int", 0,
                      "added to every default port, to run a second lab beside the first",
                      minimum=0, maximum=max_port_offset(),
                      bound_note=" (the lab's ports stay below the kernel's ephemeral range, "
                                 f"{EPHEMERAL_PORTS_START}+)")
HOST = Setting("OBSLAB_HOST", "str", "127.0.0.1", "address components listen on and call each other at")
BIND_HOST = Setting("OBSLAB_BIND_HOST", "str", None,
                    "address `obslab serve` listens on (`--host` wins; compose: 0.0.0.0)", default_doc="`OBSLAB_HOST`")
SERVICE_URL = Setting(f"OBSLAB_{SERVICE}_URL", "url", None,
                      "base URL of a component, e.g. `OBSLAB_ACCOUNTS_URL` (compose sets these)",
                      default_doc="`http://<OBSLAB_HOST>:<its port>`")
DB_URL = Setting("OBSLAB_DB_URL", "url", None,
                 "MySQL/MariaDB server URL; each service gets its own database `obslab_<service>` on it",
                 default_doc="a SQLite file per service")
SERVICE_DB_URL = Setting(f"OBSLAB_{SERVICE}_DB_URL", "url", None,
                         "one service's database URL, e.g. `OBSLAB_ACCOUNTS_DB_URL`, overriding everything else",
                         default_doc="`OBSLAB_DB_URL`")
ENVIRONMENT = Setting("OBSLAB_ENVIRONMENT", "str", "lab",
                      "`deployment.environment` of every span and log line")
PROFILE = Setting("OBSLAB_PROFILE", "str", "production",   # profiles.PRODUCTION.name
                  "time policy a component runs under (obslab/profiles.py; `obslab up --profile` sets it)")
REPO_ROOT = Setting("OBSLAB_REPO_ROOT", "path", None,
                    "the source tree (prometheus/, runbooks/ ...), for an installed copy (the image sets it)",
                    default_doc="where obslab is installed from")
UTC_OFFSET_HOURS = Setting("OBSLAB_UTC_OFFSET_HOURS", "float", 0.0,
                           "the lab's time zone, for the shape of its day and week (hours from UTC)")
VERSION = Setting("OBSLAB_VERSION", "str", None, "tag of the obslab images compose builds and runs (.env)",
                  default_doc="the package version")
PUBLISH_ADDRESS = Setting("OBSLAB_PUBLISH_ADDRESS", "str", "127.0.0.1",
                          "host address compose publishes the lab's UIs and gateway on (.env)")
PRELOAD = Setting("OBSLAB_PRELOAD", "bool", True,
                  "native lab: fork the Python components from one process that imported the platform "
                  "once (faster start, shared memory); false: each imports everything itself")
FORK_SERVER_SOCKET = Setting("OBSLAB_FORK_SERVER", "path", None,
                             "set by `obslab up` for its programs, not by hand: the fork server's socket "
                             "their launchers ask (obslab/lab/launch.py)", default_doc="none: serve alone")

# --- backups (obslab/lab/backup.py)
BACKUP_DIR = Setting("OBSLAB_BACKUP_DIR", "path", None, "where `obslab backup` writes and lists archives",
                     default_doc="`<data dir>/backups`")
BACKUP_EVERY = Setting("OBSLAB_BACKUP_EVERY", "str", None,
                       "`obslab up` takes a backup this often, e.g. `6h` (`--backup-every` wins)", default_doc="never")
BACKUP_KEEP = Setting("OBSLAB_BACKUP_KEEP", "int", 7,
                      "scheduled backups kept; older scheduled ones are deleted (`--backup-keep` wins)",
                      minimum=1, maximum=10_000)
PROMETHEUS_ADMIN_API = Setting("OBSLAB_PROMETHEUS_ADMIN_API", "bool", False,
                               "run the native lab's Prometheus with its admin API, so that backups snapshot "
                               "the TSDB through it (anybody on this machine could then delete series)")

# --- secrets (obslab/secrets.py)
SECRETS_DIR = Setting("OBSLAB_SECRETS_DIR", "path", None, "the lab's generated secrets",
                      default_doc="`<data dir>/run/secrets`")
JWT_SECRET = Setting("OBSLAB_JWT_SECRET", "str", None, "key of customer access tokens, instead of the lab's file",
                     default_doc="the lab's file")
CONTROL_TOKEN = Setting("OBSLAB_CONTROL_TOKEN", "str", None,
                        "operator token the CLI sends to the control plane, instead of the lab's file",
                        default_doc="the lab's file")
ALERTMANAGER_PASSWORD = Setting("OBSLAB_ALERTMANAGER_PASSWORD", "str", None,
                                "password of Alertmanager's API for a drill run on the host against a compose lab "
                                "(whose secrets are in a volume)",
                                default_doc="the lab's file")
DEMO_PASSWORD = Setting("OBSLAB_DEMO_PASSWORD", "str", "demo-password",
                        "password of the demo customers `obslab up` creates (set it before the first `up`)")

# --- serving and calling
THREADS = Setting("OBSLAB_THREADS", "int", 16, "request threads of each service", minimum=1, maximum=256)
# Idle keep-alives and slow clients included: far above what the lab's own traffic opens, and
# every one of them costs a descriptor, not a thread.
CONNECTION_LIMIT = Setting("OBSLAB_CONNECTION_LIMIT", "int", 2000, "open connections a service accepts at once",
                           minimum=16, maximum=100_000)
HTTP_TIMEOUT_SECONDS = Setting("OBSLAB_HTTP_TIMEOUT_SECONDS", "float", 5.0,
                               "timeout of a call from one service to another", minimum=0.05)
FAULT_INJECTOR_URL = Setting("OBSLAB_FAULT_INJECTOR_URL", "url", None,
                             "fault-injector the components follow (`obslab up` sets it)",
                             default_doc="none: no faults")
FAULT_POLL_SECONDS = Setting("OBSLAB_FAULT_POLL_SECONDS", "float", 1.0,
                             "how often a component asks the fault-injector for its faults", minimum=0.05)

# --- gateway
TRUSTED_PROXIES = Setting("OBSLAB_TRUSTED_PROXIES", "str", "",
                          "proxies whose X-Forwarded-For the gateway believes (comma-separated CIDRs)",
                          default_doc="none")
RATE_LIMIT_RPS = Setting("OBSLAB_RATE_LIMIT_RPS", "float", 50.0, "requests per second per client (0: no limit)",
                         minimum=0.0)
RATE_LIMIT_BURST = Setting("OBSLAB_RATE_LIMIT_BURST", "float", None, "burst per client above the rate",
                           minimum=0.0, default_doc="2 x the rate, at least 1")
EDGE_DETAILED_REFUSALS = Setting(
    "OBSLAB_EDGE_DETAILED_REFUSALS", "float", 20.0,
    "refusals per second the gateway's edge traces and logs one by one; beyond, they are counted "
    "and summed up in one log line a second (0: none one by one)", minimum=0.0)

# --- auth
ARGON2_TIME_COST = Setting("OBSLAB_ARGON2_TIME_COST", "int", None, "Argon2 passes per password hash (at most 1000)",
                           minimum=1, default_doc="argon2-cffi's (3)")
ARGON2_MEMORY_KIB = Setting("OBSLAB_ARGON2_MEMORY_KIB", "int", None,
                            "Argon2 memory per hash in KiB (at least 8 per lane, within the hash memory budget)",
                            minimum=1, default_doc="argon2-cffi's (65536)")
AUTH_HASH_MEMORY_MIB = Setting("OBSLAB_AUTH_HASH_MEMORY_MIB", "int", 128,
                               "memory all concurrent password hashes may use together", minimum=1)
AUTH_HASH_WAIT_SECONDS = Setting("OBSLAB_AUTH_HASH_WAIT_SECONDS", "float", 2.0,
                                 "longest wait for a hashing slot before auth answers 503", minimum=0.0)
TOKEN_TTL_SECONDS = Setting("OBSLAB_TOKEN_TTL_SECONDS", "int", 900, "lifetime of customer access tokens",
                            minimum=60, maximum=3600,   # services/common/tokens.py: MIN/MAX_TOKEN_SECONDS
                            bound_note=" seconds (the gateway refuses longer-lived tokens)")

# --- simulated peers
NOTIFY_LATENCY_MS = Setting("OBSLAB_NOTIFY_LATENCY_MS", "float", 8.0,
                            "median latency of the simulated notification provider", minimum=0.0)
PROCESSOR_LATENCY_MS = Setting("OBSLAB_PROCESSOR_LATENCY_MS", "float", 180.0,
                               "median latency of the simulated card processor", minimum=0.0)
PROCESSOR_DECLINE_RATE = Setting("OBSLAB_PROCESSOR_DECLINE_RATE", "float", 0.02,
                                 "share of card payments the simulated processor declines (0-1)", minimum=0.0)

# --- trace sink (native lab)
TRACE_MAX_INFLATED_BYTES = Setting("OBSLAB_TRACE_MAX_INFLATED_BYTES", "int", 64 * 1024 * 1024,
                                   "largest export the trace sink inflates from gzip/deflate", minimum=1024 * 1024)
TRACE_RETENTION_HOURS = Setting("OBSLAB_TRACE_RETENTION_HOURS", "float", 48.0, "how long the trace sink keeps spans",
                                minimum=0.01)
TRACE_MAX_SPANS = Setting("OBSLAB_TRACE_MAX_SPANS", "int", 2_000_000, "spans the trace sink keeps at most",
                          minimum=1000)

# --- alert-receiver
RECEIVER_MAX_NOTIFICATIONS = Setting("OBSLAB_RECEIVER_MAX_NOTIFICATIONS", "int", 10_000,
                                     "notifications the alert-receiver keeps at most", minimum=1)
RECEIVER_RETENTION_HOURS = Setting("OBSLAB_RECEIVER_RETENTION_HOURS", "float", 168.0,
                                   "how long the alert-receiver keeps notifications", minimum=0.001)
RECEIVER_MAX_DRILL_REPORTS = Setting("OBSLAB_RECEIVER_MAX_DRILL_REPORTS", "int", 500,
                                     "drill reports the alert-receiver keeps at most", minimum=1)
LINK_HOSTS = Setting("OBSLAB_LINK_HOSTS", "str", "",
                     "more hosts notification links may point at (comma-separated host[:port])", default_doc="none")
RUNBOOKS_DIR = Setting("OBSLAB_RUNBOOKS_DIR", "path", None, "where the alert-receiver reads the runbooks it serves",
                       default_doc="`runbooks/` of the source tree")

# --- load generator (services/loadgen/config.py checks the ranges of arguments and variables alike)
LOAD_RATE = Setting("OBSLAB_LOAD_RATE", "float", 2.0, "base journey starts per second before the diurnal shape",
                    minimum=0.0)
LOAD_CONCURRENCY = Setting("OBSLAB_LOAD_CONCURRENCY", "int", 8, "worker threads, i.e. requests in flight at most",
                           minimum=1)
LOAD_USERS = Setting("OBSLAB_LOAD_USERS", "int", 200, "simulated customers", minimum=1)
LOAD_THINK_SECONDS = Setting("OBSLAB_LOAD_THINK_SECONDS", "float", 2.0,
                             "mean think time between the steps of a journey", minimum=0.0)
LOAD_FLAT = Setting("OBSLAB_LOAD_FLAT", "bool", False, "no diurnal shape: the base rate all day")
LOAD_SEED = Setting("OBSLAB_LOAD_SEED", "int", 1, "seed of identities, addresses and choices", minimum=0)
LOAD_MIX = Setting("OBSLAB_LOAD_MIX", "str", None, "journey weights, e.g. `transfer=50,pay=50`",
                   default_doc="the default mix")
LOAD_RETRY_SHARE = Setting("OBSLAB_LOAD_RETRY_SHARE", "float", 0.05,
                           "share of transfers sent twice with the same Idempotency-Key", minimum=0.0)
LOAD_TIMEOUT_SECONDS = Setting("OBSLAB_LOAD_TIMEOUT_SECONDS", "float", 10.0, "client timeout of one request",
                               minimum=0.0)
LOAD_USER_PREFIX = Setting("OBSLAB_LOAD_USER_PREFIX", "str", "loadgen-", "usernames are PREFIX + 5 digits")
LOAD_PASSWORD = Setting("OBSLAB_LOAD_PASSWORD", "str", None, "password of every simulated customer",
                        default_doc="the lab's generated one")
LOAD_FLOOD_THREADS = Setting("OBSLAB_LOAD_FLOOD_THREADS", "int", 0, "sender threads of a DDoS flood (0: from its rps)",
                             minimum=0)
LOAD_FLOOD_RAMP_SECONDS = Setting("OBSLAB_LOAD_FLOOD_RAMP_SECONDS", "float", 20.0,
                                  "how long a flood takes to reach its full rate", minimum=0.0)
# Each well-formed login costs the auth service an Argon2 verification (~0.25 s of CPU): an
# uncapped credential-stuffing share would stop a 2-core lab outright instead of stressing it.
LOAD_FLOOD_LOGIN_RPS = Setting("OBSLAB_LOAD_FLOOD_LOGIN_RPS", "float", 0.5,
                               "cap on well-formed junk logins per second in a flood", minimum=0.0)

# --- IIS mock (iis-mock/clock.py)
IIS_SPEED = Setting("OBSLAB_IIS_SPEED", "float", 1.0, "simulated seconds per real second", minimum=0.001)
IIS_START = Setting("OBSLAB_IIS_START", "str", None, "simulated time at start-up, ISO 8601", default_doc="now")
IIS_SEED = Setting("OBSLAB_IIS_SEED", "int", 9182, "seed of the random streams (a fixed, repeatable estate)",
                   minimum=0)
IIS_STEP_SECONDS = Setting("OBSLAB_IIS_STEP_SECONDS", "float", None, "simulated seconds per step", minimum=0.01,
                           default_doc="`max(1, speed / 100)`")

# --- ML
DDOS_MODEL_DIR = Setting("OBSLAB_DDOS_MODEL_DIR", "path", None, "where the DDoS detector keeps its model",
                         default_doc="`<data dir>/ml/ddos`")
BASELINE_TARGETS = Setting("OBSLAB_BASELINE_TARGETS", "path", None,
                           "YAML list of `{name, service, expr}` series the baseliner learns",
                           default_doc="the built-in targets")
COST_MODEL = Setting("OBSLAB_COST_MODEL", "path", None,
                     "YAML unit prices the performance-aggregator turns CPU, memory and series into a monthly cost with",
                     default_doc="`ml/performance/cost-model.yml`")

# The table: every declaration above, in the order written (docs/settings.md lists them so).
SETTINGS: tuple[Setting, ...] = tuple(value for value in dict(globals()).values() if isinstance(value, Setting))

_PATTERN_PARTS = re.compile(r"(?P<prefix>[A-Z0-9_]*)<SERVICE>(?P<suffix>[A-Z0-9_]*)")


def declaration(name: str) -> Setting | None:
    """The declaration of variable ``name``: its own, or a pattern's for one of the lab's
    components (``OBSLAB_ACCOUNTS_URL``); None when nothing declares it."""
    for setting in SETTINGS:
        if setting.name == name:
            return setting
    for setting in SETTINGS:
        if not setting.is_pattern:
            continue
        parts = _PATTERN_PARTS.fullmatch(setting.name)
        assert parts is not None
        prefix, suffix = parts.group("prefix"), parts.group("suffix")
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
            key = name[len(prefix):len(name) - len(suffix)]
            if key in {env_key(component) for component in topology.DEFAULT_PORTS}:
                return setting.of(key.lower().replace("_", "-"))
    return None


# --- reading --------------------------------------------------------------------------------------


def data_dir(arg: str | os.PathLike | None = None) -> Path:
    if arg:
        return Path(arg).expanduser().resolve()
    return DATA_DIR.get().resolve()


def port_offset(arg: int | None = None) -> int:
    if arg is not None:
        return arg
    return PORT_OFFSET.get()


def host() -> str:
    return HOST.get()


def port(component: str, offset: int | None = None) -> int:
    return topology.DEFAULT_PORTS[component] + port_offset(offset)


def service_url(component: str) -> str:
    """Base URL at which other components reach ``component``."""
    override = SERVICE_URL.of(component).get()
    if override:
        return override.rstrip("/")
    return f"http://{host()}:{port(component)}"


def environment() -> str:
    return ENVIRONMENT.get()


def _bound_text(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"between {minimum} and {maximum}"
    return f">= {minimum}" if minimum is not None else f"<= {maximum}"


def int_setting(name: str, default: int, minimum: int | None = 0, maximum: int | None = None,
                note: str = "") -> int:
    """Integer variable ``name`` (unset or empty: ``default``) within the bounds; ``note`` follows
    the bounds in the message that refuses a value outside them."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be {_bound_text(minimum, maximum)}{note}, got {value}")
    return value


def float_setting(name: str, default: float, minimum: float | None = 0.0, maximum: float | None = None,
                  note: str = "") -> float:
    """Finite number variable ``name`` (unset or empty: ``default``) within the bounds."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be {_bound_text(minimum, maximum)}{note}, got {value}")
    return value


def repo_root() -> Path:
    """The source tree (prometheus/, runbooks/ ... live there); obslab is installed editable."""
    override = REPO_ROOT.get()
    return override.resolve() if override else Path(__file__).resolve().parent.parent



# --- durations -----------------------------------------------------------------------------------

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


# --- the reference (docs/settings.md) -------------------------------------------------------------

DOCS_PATH = "docs/settings.md"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _default_cell(setting: Setting) -> str:
    if setting.default_doc is not None:
        return setting.default_doc
    if setting.default is None or setting.default == "":
        return "unset"
    return f"`{_shown(setting.default)}`"


def _bounds_cell(setting: Setting) -> str:
    low, high = setting.minimum, setting.maximum
    if low is not None and high is not None:
        return f"{_shown(low)} to {_shown(high)}"
    if low is not None:
        return f">= {_shown(low)}"
    return f"<= {_shown(high)}" if high is not None else ""


def render_markdown() -> str:
    """docs/settings.md: every ``OBSLAB_*`` variable, from :data:`SETTINGS`."""
    lines = [
        "<!-- GENERATED by `obslab generate` from obslab/settings.py - DO NOT EDIT. -->",
        "",
        "# Settings",
        "",
        "Every `OBSLAB_*` environment variable the lab reads (all optional). A command-line argument",
        "wins over a variable, which wins over the default; an unset or empty variable has its default.",
        "A value that cannot work stops the component at start-up with one line naming the variable.",
        "`<SERVICE>` stands for a component's name in upper case, `-` written `_` (`TRACE_SINK`).",
        "",
        "| Variable | Type | Default | Bounds | Description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for setting in SETTINGS:
        cells = (f"`{setting.name}`", setting.kind, _default_cell(setting), _bounds_cell(setting), setting.doc)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def generated_files() -> dict[str, Callable[[], str]]:
    """Repository-relative path -> function producing its current content."""
    return {DOCS_PATH: render_markdown}
