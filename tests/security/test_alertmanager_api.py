"""Attacks through Alertmanager's own HTTP API, against a real Alertmanager 0.25 started exactly as
the native lab starts it (``NativeLab._alertmanager_program``: the generated configuration and
``--web.config.file``), delivering to the real alert-receiver on 127.0.0.1.

The alert-receiver takes webhooks only with Alertmanager's token, but Alertmanager delivers
whatever its API is given, with that token: without authentication on the API anybody who
reaches the port could plant a page (``POST /api/v2/alerts``) or hide a real one (``POST
/api/v2/silences``). The API answers only basic auth as the lab's web user, whose password is
generated per lab (``alertmanager-web/password``); its bcrypt hash is the web config.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml

from obslab import secrets, settings, topology
from obslab.generators import amconfig, promconfig
from obslab import conventions as c
from obslab.lab.native import LabComponent, NativeLab, check_health
from obslab.profiles import FAST, PRODUCTION
from obslab.services.alert_receiver.app import create_app
from tests.integration.lab import free_offset
from tests.support import required_binary, serve, stop_process

WAIT_S = 20
USER = secrets.ALERTMANAGER_WEB_USER


def password() -> str:
    return secrets.alertmanager_web_password()


def strangers() -> dict[str, dict[str, Any]]:
    """What somebody without the lab's password can send (requests keyword arguments)."""
    return {
        "no credentials": {},
        "a wrong password": {"auth": (USER, "x" * 43)},
        "an empty password": {"auth": (USER, "")},
        "the password of another user": {"auth": ("admin", password())},
        "the password with a character more": {"auth": (USER, password() + "x")},
        # The token Alertmanager itself sends to the alert-receiver is no key to Alertmanager.
        "alertmanager's webhook token": {"headers": {
            "Authorization": f"Bearer {secrets.control_token(topology.ALERTMANAGER_PRINCIPAL)}"}},
    }


@dataclass
class Alertmanager:
    url: str
    receiver_url: str
    lab: NativeLab
    command: list[str]

    @property
    def auth(self) -> tuple[str, str]:
        return USER, password()

    def post_alerts(self, *labels: dict[str, str], **how: Any) -> requests.Response:
        body = [{"labels": item, "annotations": {"summary": f"{item['alertname']} on {item.get('service')}"}}
                for item in labels]
        return requests.post(f"{self.url}/api/v2/alerts", json=body, timeout=5, **how)

    def alerts(self, alertname: str) -> list[dict]:
        response = requests.get(f"{self.url}/api/v2/alerts", params={"filter": f'alertname="{alertname}"'},
                                auth=self.auth, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def silences(self) -> list[dict]:
        response = requests.get(f"{self.url}/api/v2/silences", auth=self.auth, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def delivered(self, alertname: str, receiver: str | None = None) -> list[dict]:
        params = {"limit": 1000, "alertname": alertname, **({"receiver": receiver} if receiver else {})}
        response = requests.get(f"{self.receiver_url}/api/v1/notifications", params=params, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"after {timeout:.0f}s: {what}"
        time.sleep(0.2)
    return result


def page(alertname: str, service: str = c.PAYMENTS) -> dict[str, str]:
    return {"alertname": alertname, "severity": "critical", "team": "core-banking", "service": service}


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    binary = required_binary("prometheus-alertmanager")
    data_dir = tmp_path_factory.mktemp("alertmanager-api") / "data"
    (data_dir / "run").mkdir(parents=True)
    # The lab's secrets are this test process's (tests/conftest.py): the alert-receiver served
    # here checks Alertmanager's token against them.
    (data_dir / "run" / "secrets").symlink_to(secrets.secrets_dir(), target_is_directory=True)
    offset = free_offset(11_000)
    receiver = serve(create_app(f"sqlite:///{data_dir / 'alerts.sqlite3'}"),
                     port=topology.ALERT_RECEIVER.port + offset)
    lab = NativeLab(data_dir, offset=offset, profile=FAST)
    command = lab._alertmanager_program(binary).command
    log = (data_dir / "alertmanager.log").open("w")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://{topology.ALERTMANAGER.address('native', offset=offset)}"
    try:
        def ready() -> bool:
            assert process.poll() is None, (data_dir / "alertmanager.log").read_text()
            try:
                return requests.get(f"{url}/-/ready", auth=(USER, password()), timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        eventually(ready, "alertmanager did not become ready")
        yield Alertmanager(url, receiver.url, lab, command)
    finally:
        stop_process(process)
        log.close()
        receiver.stop()


# --- the attacks -----------------------------------------------------------------------------------


def test_a_stranger_cannot_post_a_fake_alert_through_alertmanagers_api(alertmanager):
    fake = page("FakePaymentsOutage")
    for who, how in strangers().items():
        response = alertmanager.post_alerts(fake, **how)
        assert response.status_code == 401, who
        assert response.headers.get("WWW-Authenticate") == "Basic", who
    # A page posted after them with the password arrives: had any of them been taken, it would
    # have arrived first (same route, same group_wait, posted earlier).
    assert alertmanager.post_alerts(page("RealPaymentsOutage"), auth=alertmanager.auth).status_code == 200
    eventually(lambda: alertmanager.delivered("RealPaymentsOutage", c.RECEIVER_PAGER),
               "the real page did not reach the pager")
    assert alertmanager.delivered("FakePaymentsOutage") == []
    assert alertmanager.alerts("FakePaymentsOutage") == []


def test_a_stranger_cannot_silence_a_page_through_alertmanagers_api(alertmanager):
    now = datetime.now(timezone.utc)
    silence = {"matchers": [{"name": "alertname", "value": "TransfersFailing", "isRegex": False, "isEqual": True}],
               "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=4)).isoformat(),
               "createdBy": "on-call", "comment": "planned maintenance"}
    for who, how in strangers().items():
        response = requests.post(f"{alertmanager.url}/api/v2/silences", json=silence, timeout=5, **how)
        assert response.status_code == 401, who
        # Nor can they read which pages are silenced, or whatever else the API tells.
        for path in ("/api/v2/silences", "/api/v2/alerts", "/api/v2/status", "/metrics", "/"):
            assert requests.get(f"{alertmanager.url}{path}", timeout=5, **how).status_code == 401, (who, path)
    assert not [s for s in alertmanager.silences() if s["createdBy"] == "on-call"]
    # The page the silence was meant to hide pages.
    assert alertmanager.post_alerts(page("TransfersFailing", c.TRANSACTIONS), auth=alertmanager.auth).status_code == 200
    [note] = eventually(lambda: alertmanager.delivered("TransfersFailing", c.RECEIVER_PAGER),
                        "the page was silenced")
    assert note["status"] == "firing"


def test_a_stranger_cannot_lift_an_operators_silence_through_alertmanagers_api(alertmanager):
    """Expiring the on-call's maintenance silence would page everybody for a planned outage."""
    now = datetime.now(timezone.utc)
    silence = {"matchers": [{"name": "service", "value": "iis", "isRegex": False, "isEqual": True}],
               "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
               "createdBy": "operator", "comment": "IIS patching"}
    response = requests.post(f"{alertmanager.url}/api/v2/silences", json=silence, auth=alertmanager.auth, timeout=5)
    assert response.status_code == 200, response.text
    silence_id = response.json()["silenceID"]
    for who, how in strangers().items():
        response = requests.delete(f"{alertmanager.url}/api/v2/silence/{silence_id}", timeout=5, **how)
        assert response.status_code == 401, who
    [kept] = [s for s in alertmanager.silences() if s["id"] == silence_id]
    assert kept["status"]["state"] == "active"


# --- the lab's own clients still get in ----------------------------------------------------------------


def test_the_labs_own_clients_reach_alertmanager_with_the_password(alertmanager, tmp_path):
    # Prometheus: the native configuration's basic_auth, the password read from the file it names.
    native = promconfig.config("native", FAST, rules_glob="/r/*.yml", offset=alertmanager.lab.offset,
                               secrets_dir=alertmanager.lab.secrets_dir)
    [target] = native["alerting"]["alertmanagers"]
    auth = target["basic_auth"]
    prometheus = (auth["username"], Path(auth["password_file"]).read_text().strip())
    assert target["static_configs"][0]["targets"] == [alertmanager.url.removeprefix("http://")]
    response = alertmanager.post_alerts(page("PrometheusSentPage"), auth=prometheus)
    assert response.status_code == 200, response.text
    [note] = eventually(lambda: alertmanager.delivered("PrometheusSentPage", c.RECEIVER_PAGER),
                        "the page Prometheus sent did not reach the pager")
    assert note["alerts"][0]["service"] == c.PAYMENTS
    # Prometheus scrapes Alertmanager's metrics with the same credentials.
    [job] = [j for j in native["scrape_configs"] if j["job_name"] == c.ALERTMANAGER]
    assert job["basic_auth"] == auth
    assert requests.get(f"{alertmanager.url}/metrics", auth=prometheus, timeout=5).status_code == 200

    # The lab's health probe (`obslab up`, `obslab status`) sends them too; without, it reads a 401.
    probe = LabComponent(c.ALERTMANAGER, alertmanager.url, alertmanager.url + topology.ALERTMANAGER.health_path,
                         **alertmanager.lab._health_credentials(topology.ALERTMANAGER))
    assert check_health(probe.health_url, auth=probe.health_auth()) == (True, "ok")
    assert check_health(probe.health_url) == (False, "HTTP 401")
    assert password() not in repr(probe), "the lab's manifest names the password's file, never the password"

    # People: amtool with --http.config.file, as alertmanager/README.md shows.
    http_config = tmp_path / "amtool-http.yml"
    http_config.write_text(yaml.safe_dump({"basic_auth": amconfig.client_basic_auth("native")}))
    amtool = required_binary("amtool")
    query = [amtool, f"--alertmanager.url={alertmanager.url}", "--output=json", "alert", "query",
             "alertname=PrometheusSentPage"]
    result = subprocess.run([*query, f"--http.config.file={http_config}"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert [a["labels"]["alertname"] for a in yaml.safe_load(result.stdout)] == ["PrometheusSentPage"]
    refused = subprocess.run(query, capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "401" in refused.stderr + refused.stdout


def test_alertmanager_runs_with_the_labs_web_config_in_both_runtimes(alertmanager):
    native_web_config = amconfig.web_config_file("native", alertmanager.lab.secrets_dir)
    assert f"--web.config.file={native_web_config}" in alertmanager.command
    assert Path(native_web_config) == (secrets.secrets_dir() / secrets.ALERTMANAGER_WEB_CONFIG_FILE).resolve()
    assert amconfig.web_config_file("compose") == f"{secrets.COMPOSE_SECRETS_DIR}/alertmanager-web/web.yml"
    # Prometheus authenticates in both runtimes, reading the password where each runtime keeps it.
    for runtime, password_file in (("native", str((secrets.secrets_dir() / "alertmanager-web/password").resolve())),
                                   ("compose", f"{secrets.COMPOSE_SECRETS_DIR}/alertmanager-web/password")):
        document = promconfig.config(runtime, PRODUCTION, rules_glob="/r/*.yml")
        expected = {"username": USER, "password_file": password_file}
        assert [am["basic_auth"] for am in document["alerting"]["alertmanagers"]] == [expected], runtime
        [job] = [j for j in document["scrape_configs"] if j["job_name"] == c.ALERTMANAGER]
        assert job["basic_auth"] == expected, runtime
    # Nobody's password is written into a configuration: only the file it is read from.
    for text in ((settings.repo_root() / "prometheus" / "prometheus.yml").read_text(),
                 (alertmanager.lab.data_dir / "alertmanager" / amconfig.CONFIG_NAME).read_text()):
        assert password() not in text and "password:" not in text


# --- the secrets behind it -------------------------------------------------------------------------


def test_the_web_config_holds_only_a_hash_that_follows_the_password(tmp_path):
    directory = tmp_path / "secrets"
    secrets.init_secrets(directory, [])
    password_path = directory / secrets.ALERTMANAGER_WEB_PASSWORD_FILE
    web_config_path = directory / secrets.ALERTMANAGER_WEB_CONFIG_FILE
    first = password_path.read_text()
    assert len(first) >= secrets.MIN_SECRET_BYTES and first.isascii()
    web_config = web_config_path.read_text()
    assert first not in web_config
    [(user, hashed)] = yaml.safe_load(web_config)["basic_auth_users"].items()
    assert user == USER and bcrypt.checkpw(first.encode(), hashed.encode())
    for path in (password_path, web_config_path):
        assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700

    # A restart keeps both as they are (Alertmanager's running password stays valid).
    assert [w for w in secrets.init_secrets(directory, []) if w.startswith("alertmanager-web/")] == []
    assert password_path.read_text() == first and web_config_path.read_text() == web_config
    # A password changed by hand (or a deleted web config) gets a web config that matches it.
    second = "N" * 43
    password_path.write_text(second)
    assert secrets.init_secrets(directory, []) == [secrets.ALERTMANAGER_WEB_CONFIG_FILE]
    [hashed] = yaml.safe_load(web_config_path.read_text())["basic_auth_users"].values()
    assert bcrypt.checkpw(second.encode(), hashed.encode())
    web_config_path.unlink()
    assert secrets.init_secrets(directory, []) == [secrets.ALERTMANAGER_WEB_CONFIG_FILE]


@pytest.mark.parametrize("weak", ["", "short", "p@ss:word/with?url#characters-" + "x" * 32],
                         ids=["empty", "short", "not-url-safe"])
def test_a_weak_alertmanager_password_stops_the_secrets_init(tmp_path, weak):
    directory = tmp_path / "secrets"
    secrets.init_secrets(directory, [])
    (directory / secrets.ALERTMANAGER_WEB_PASSWORD_FILE).write_text(weak)
    with pytest.raises(secrets.SecretError, match="alertmanager-web/password"):
        secrets.init_secrets(directory, [])
