"""Per-deployment secrets: generated on first start, never committed, never defaulted.

Every lab (a native data directory, a compose project) gets its own secrets the first time it
starts: ``obslab up`` writes them under ``<data dir>/run/secrets``; compose runs ``obslab secrets
init`` once in a one-shot container that writes them into the ``lab-secrets`` volume. A component
that finds its secret missing, too short or equal to a value ever published (the old
development defaults) refuses to start with one line that says what to do.

The layout is the same in both runtimes (compose mounts each subfolder only into the containers
that need it, so a container holds no other component's key)::

    jwt/secret                       signs customer access tokens (auth) and verifies them (gateway)
    keys/public/<component>.pem      every component's public key: every component reads them all
    keys/<component>/private.pem     one component's Ed25519 signing key (service tokens)
    control/tokens.json              SHA-256 of each control-plane token, by principal (verifiers)
    operator/token                   the operator's control token (the CLI, drills)
    alertmanager/token               Alertmanager's bearer token for the alert-receiver's webhooks
    alertmanager-web/password        the password of Alertmanager's HTTP API (user ``operator``): what
                                     Prometheus, the tests and people send (basic auth)
    alertmanager-web/web.yml         Alertmanager's --web.config.file: that password's bcrypt hash
    keys/load-generator/customer-password   the password of the load generator's simulated customers
                                     (they hold money: a committed one would let anybody spend it)
    database/<component>/password    compose: the MySQL password of the component's own user
    mysql/root-password              compose: MySQL's root password
    mysql/users/<component>          compose: the same per-component passwords, for MySQL's init
    grafana/admin-password           compose: Grafana's admin password

Natively every process runs as the same user, so the separation of keys there is by path only;
files are created 0600 inside 0700 folders from the first byte (no window of wider access).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets as _random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from obslab import settings, topology
from obslab.settings import ConfigError

SECRETS_DIR_ENV = settings.SECRETS_DIR.name
# Where every container of the compose stack finds its secrets (its own subfolders of the volume).
COMPOSE_SECRETS_DIR = "/run/obslab/secrets"
JWT_SECRET_ENV = settings.JWT_SECRET.name
CONTROL_TOKEN_ENV = settings.CONTROL_TOKEN.name

CONTROL_PRINCIPALS = (topology.OPERATOR, topology.ALERTMANAGER_PRINCIPAL)

JWT_SECRET_FILE = "jwt/secret"
PUBLIC_KEYS_DIR = "keys/public"
CONTROL_TOKENS_FILE = "control/tokens.json"
MYSQL_ROOT_PASSWORD_FILE = "mysql/root-password"
GRAFANA_PASSWORD_FILE = "grafana/admin-password"
# Grafana's copy of Alertmanager's API password (its Alertmanager datasource): Grafana's user
# cannot read Alertmanager's folder.
GRAFANA_ALERTMANAGER_PASSWORD_FILE = "grafana/alertmanager-password"
# Alertmanager's HTTP API accepts nobody without this user's password (basic auth): its API takes
# alerts (POST /api/v2/alerts: a fake page, delivered with Alertmanager's valid webhook token)
# and silences (a real page hidden) from whoever reaches it.
ALERTMANAGER_WEB_USER = "operator"
ALERTMANAGER_WEB_PASSWORD_FILE = "alertmanager-web/password"
ALERTMANAGER_WEB_CONFIG_FILE = "alertmanager-web/web.yml"
# bcrypt's cost for that hash. The password is 256 random bits, so the cost adds nothing against
# guessing; it is what Alertmanager pays, one comparison at a time, for every password it has not
# seen yet (a flood of wrong ones), so it stays at the cost of the exporter-toolkit's own dummy hash
# for unknown users (10: a wrong user name then takes as long as a wrong password).
ALERTMANAGER_WEB_BCRYPT_ROUNDS = 10

MIN_SECRET_BYTES = 32
# What _token() generates (secrets.token_urlsafe), and nothing shorter.
_URL_SAFE_SECRET = re.compile(rf"[A-Za-z0-9_-]{{{MIN_SECRET_BYTES},}}")
# Values that were once written in this repository (defaults, examples): a lab that still uses
# one can have tokens forged by anybody who read the repository.
# (Shorter published values, like the old MySQL and Grafana passwords, fail the length check.)
KNOWN_SECRETS = frozenset({
    "obslab-development-secret-do-not-use-outside-the-lab",
    "obslab-compose-lab-secret-change-me",
})


class SecretError(ConfigError):
    """A secret is missing or unusable; the message says which file and how to fix it."""


def secrets_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``$OBSLAB_SECRETS_DIR``, else ``<data dir>/run/secrets``."""
    configured = settings.SECRETS_DIR.get()
    if configured is not None and data_dir is None:
        return configured.resolve()
    return settings.data_dir(data_dir) / "run" / "secrets"


def private_key_file(component: str) -> str:
    return f"keys/{component}/private.pem"


def public_key_file(component: str) -> str:
    return f"{PUBLIC_KEYS_DIR}/{component}.pem"


LOADGEN_PASSWORD_FILE = "keys/load-generator/customer-password"


def token_file(principal: str) -> str:
    return f"{principal}/token"


def database_password_file(component: str) -> str:
    return f"database/{component}/password"


def mysql_user_password_file(component: str) -> str:
    return f"mysql/users/{component}"


def check_strength(value: str, what: str) -> str:
    """``value`` when it could be a secret; a SecretError naming ``what`` otherwise."""
    if value.strip() in KNOWN_SECRETS or value.strip().lower() in KNOWN_SECRETS:
        raise SecretError(f"{what} is a value published in the obslab repository; anyone could forge "
                          "credentials with it. Remove it and let the lab generate one (`obslab secrets init`)")
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise SecretError(f"{what} is shorter than {MIN_SECRET_BYTES} bytes; use a random one "
                          "(`obslab secrets init` generates them)")
    return value


# --- writing ----------------------------------------------------------------------------------


def private_dir(path: Path, owner: tuple[int, int] | None = None) -> None:
    """Create ``path`` and any missing parent 0700 (mkdir's ``parents`` would use the umask)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)
        if owner is not None:
            os.chown(folder, *owner)


def write_private(path: Path, data: bytes, owner: tuple[int, int] | None = None) -> bool:
    """Create ``path`` 0600 with ``data`` unless it exists; True when written.

    The mode is given to open(2), so the file is never readable by others, not even for the
    moment between creating and chmod-ing it; the content is written to a temporary file first
    and linked into place whole, so an interrupted run never leaves an empty or half a secret.
    """
    private_dir(path.parent, owner)
    if path.exists():
        return False
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{_random.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
        if owner is not None:
            os.fchown(fd, *owner)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)          # fails if another run got there first: theirs stands
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink()


def _own(path: Path, owner: tuple[int, int] | None) -> None:
    """Give an existing secret (and its folder) to ``owner``: an image user may change between runs."""
    if owner is None or not path.exists():
        return
    for target in (path.parent, path):
        stat = target.stat()
        if (stat.st_uid, stat.st_gid) != owner:
            os.chown(target, *owner)


def private_file(path: Path) -> Path:
    """``path`` exists, 0600 from its creation (an existing file keeps its content and mode)."""
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    return path


def _token() -> str:
    return _random.token_urlsafe(MIN_SECRET_BYTES)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Owners:
    """Who owns which folder (uid, gid), for compose: each image runs as its own user.

    ``None`` everywhere natively: the files belong to whoever starts the lab."""

    components: tuple[int, int] | None = None
    mysql: tuple[int, int] | None = None
    grafana: tuple[int, int] | None = None
    alertmanager: tuple[int, int] | None = None


def init_secrets(directory: Path, components: Iterable[str], *, database_components: Iterable[str] = (),
                 compose: bool = False, owners: Owners = Owners()) -> list[str]:
    """Generate every secret that is missing under ``directory``; returns the files written.

    Existing files are kept as they are: a restarted lab keeps its keys, tokens and passwords.
    ``compose`` adds what only the compose stack uses (MySQL and Grafana passwords).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    written: list[str] = []
    mine = owners.components

    def put(relative: str, data: bytes, owner: tuple[int, int] | None = mine) -> None:
        if write_private(directory / relative, data, owner):
            written.append(relative)
        _own(directory / relative, owner)

    private_dir(directory, mine)
    put(JWT_SECRET_FILE, _token().encode())
    for component in sorted(set(components) | {topology.OPERATOR}):
        private_path = directory / private_key_file(component)
        if not private_path.exists():
            key = Ed25519PrivateKey.generate()
            put(private_key_file(component), key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        try:
            key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        except ValueError:
            raise SecretError(f"the signing key of {component} ({private_path}) is not a PEM key; delete it "
                              "and run `obslab secrets init` (every component then gets the new public key)") from None
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        public_path = directory / public_key_file(component)
        if not public_path.exists() or public_path.read_bytes() != public:
            public_path.unlink(missing_ok=True)
            put(public_key_file(component), public)

    put(LOADGEN_PASSWORD_FILE, _token().encode())
    principal_owner = {topology.OPERATOR: mine,
                       topology.ALERTMANAGER_PRINCIPAL: owners.alertmanager if compose else mine}
    for principal in CONTROL_PRINCIPALS:
        put(token_file(principal), _token().encode(), principal_owner[principal])
    digests = {p: _digest((directory / token_file(p)).read_text().strip()) for p in CONTROL_PRINCIPALS}
    tokens_path = directory / CONTROL_TOKENS_FILE
    if _json_or_none(tokens_path) != digests:
        tokens_path.unlink(missing_ok=True)
        put(CONTROL_TOKENS_FILE, json.dumps(digests, indent=2, sort_keys=True).encode())

    # Alertmanager's HTTP API: the password its clients send, and the web config with its hash,
    # written anew only when it no longer matches the password. Compose: read by Alertmanager and
    # Prometheus, both the images' nobody (65534).
    web_owner = owners.alertmanager if compose else mine
    put(ALERTMANAGER_WEB_PASSWORD_FILE, _token().encode(), web_owner)
    web_password = (directory / ALERTMANAGER_WEB_PASSWORD_FILE).read_text().strip()
    if not _URL_SAFE_SECRET.fullmatch(web_password):
        # It travels in URLs (the compose healthcheck's http://user:password@) and must never be weak.
        raise SecretError(f"{directory / ALERTMANAGER_WEB_PASSWORD_FILE} does not hold a password obslab "
                          "generated; delete it and run `obslab secrets init` (then restart Alertmanager)")
    web_config_path = directory / ALERTMANAGER_WEB_CONFIG_FILE
    if not _web_config_admits(web_config_path, web_password):
        web_config_path.unlink(missing_ok=True)
        put(ALERTMANAGER_WEB_CONFIG_FILE, alertmanager_web_config(web_password).encode(), web_owner)

    if compose:
        put(MYSQL_ROOT_PASSWORD_FILE, _token().encode(), owners.mysql)
        for component in sorted(set(database_components)):
            # Two copies of one password (MySQL's init reads one, the component the other): a copy
            # that survives is the password; neither, a new one.
            copies = (directory / mysql_user_password_file(component), directory / database_password_file(component))
            kept = [path.read_text().strip() for path in copies if path.exists()]
            password = kept[0] if kept and kept[0] else _token()
            put(mysql_user_password_file(component), password.encode(), owners.mysql)
            put(database_password_file(component), password.encode())
        put(GRAFANA_PASSWORD_FILE, _token().encode(), owners.grafana)
        grafana_copy = directory / GRAFANA_ALERTMANAGER_PASSWORD_FILE
        if grafana_copy.exists() and grafana_copy.read_text().strip() != web_password:
            grafana_copy.unlink()
        put(GRAFANA_ALERTMANAGER_PASSWORD_FILE, web_password.encode(), owners.grafana)
    return written


def alertmanager_web_config(password: str) -> str:
    """Alertmanager's --web.config.file (the Prometheus exporter-toolkit's format): every request,
    /-/ready and /-/healthy included, needs basic auth as ALERTMANAGER_WEB_USER with ``password``."""
    import bcrypt
    import yaml

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(ALERTMANAGER_WEB_BCRYPT_ROUNDS)).decode()
    return ("# Written by `obslab secrets init` (obslab/secrets.py): Alertmanager's web server answers\n"
            f"# only basic auth as {ALERTMANAGER_WEB_USER} with the password in the file beside this one.\n"
            + yaml.safe_dump({"basic_auth_users": {ALERTMANAGER_WEB_USER: hashed}}, default_flow_style=False))


def _web_config_admits(path: Path, password: str) -> bool:
    """Whether the web config at ``path`` lets exactly ALERTMANAGER_WEB_USER in with ``password``."""
    import bcrypt
    import yaml

    try:
        users = (yaml.safe_load(path.read_text()) or {}).get("basic_auth_users")
    except (FileNotFoundError, ValueError, AttributeError, yaml.YAMLError):
        return False
    if not isinstance(users, dict) or set(users) != {ALERTMANAGER_WEB_USER}:
        return False
    hashed = users[ALERTMANAGER_WEB_USER]
    try:
        return isinstance(hashed, str) and bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:   # not a bcrypt hash
        return False


def _json_or_none(path: Path) -> object:
    """The file's JSON; None when it is missing or not JSON (then it is written anew)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


# --- reading ----------------------------------------------------------------------------------


def read(relative: str, *, what: str, directory: Path | None = None) -> str:
    path = (directory or secrets_dir()) / relative
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        raise SecretError(f"{what} is missing ({path}); is this the lab's data directory (--data-dir, "
                          "$OBSLAB_DATA_DIR)? `obslab up` generates the lab's secrets there") from None
    except PermissionError:
        raise SecretError(f"{what} ({path}) is not readable by this user") from None
    if not value:
        raise SecretError(f"{what} ({path}) is empty; delete it and run `obslab secrets init`")
    return value


def jwt_secret() -> str:
    """The key of customer access tokens: ``$OBSLAB_JWT_SECRET`` (checked), else the lab's file."""
    given = settings.JWT_SECRET.get()
    if given:
        return check_strength(given, JWT_SECRET_ENV)
    return check_strength(read(JWT_SECRET_FILE, what="the access-token key"), f"the access-token key "
                          f"({secrets_dir() / JWT_SECRET_FILE})")


def control_token(principal: str = topology.OPERATOR, directory: Path | None = None) -> str:
    """A control-plane token to send: ``$OBSLAB_CONTROL_TOKEN``, else the principal's file."""
    given = settings.CONTROL_TOKEN.get()
    if given and principal == topology.OPERATOR:
        return given
    return read(token_file(principal), what=f"the {principal} control token", directory=directory)


@lru_cache(maxsize=8)
def _control_digests(path: str) -> dict[str, str]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SecretError(f"the control-plane token list is missing ({path}); start the lab with `obslab up` "
                          "or run `obslab secrets init`") from None
    except ValueError:
        raise SecretError(f"the control-plane token list ({path}) is not JSON; delete it and run "
                          "`obslab secrets init`") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) and len(v) == 64 for v in data.values()):
        raise SecretError(f"the control-plane token list ({path}) is malformed; delete it and run "
                          "`obslab secrets init`")
    return dict(data)


def control_principals(directory: Path | None = None) -> Mapping[str, str]:
    """Principal -> SHA-256 of its token (what a verifier keeps: never the token itself)."""
    return _control_digests(str((directory or secrets_dir()) / CONTROL_TOKENS_FILE))


def principal_of(token: str, digests: Mapping[str, str]) -> str | None:
    """The principal whose token this is, compared in constant time; None when nobody's."""
    digest = _digest(token)
    found = None
    for principal, expected in digests.items():
        if hmac.compare_digest(digest, expected):
            found = principal
    return found


def loadgen_customer_password() -> str | None:
    """The lab's password for the load generator's customers, or None outside a lab."""
    path = secrets_dir() / LOADGEN_PASSWORD_FILE
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def alertmanager_web_password(directory: Path | None = None) -> str:
    """The password of Alertmanager's HTTP API (user ALERTMANAGER_WEB_USER), from the lab's secrets."""
    return read(ALERTMANAGER_WEB_PASSWORD_FILE, what="the password of Alertmanager's API", directory=directory)


def database_password(component: str) -> str | None:
    """The component's own MySQL password (compose), or None where the lab has none."""
    path = secrets_dir() / database_password_file(component)
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


# --- the command ------------------------------------------------------------------------------


def lab_components() -> list[str]:
    """Every component that runs this project's code (each gets a signing key)."""
    return sorted(comp.name for comp in topology.ALL if comp.entry)
