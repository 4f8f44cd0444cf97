"""The alert-receiver over real HTTP: Alertmanager webhook posts (with Alertmanager's control
token; the attacks are in tests/security/test_control_plane_receiver.py) are stored, listed, filtered and
counted; malformed posts are refused with a 400 and change nothing; a real Alertmanager delivers
to it; ``obslab alerts`` shows what arrived; every alert's runbook_url resolves to its runbook."""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from obslab import secrets, settings
from obslab.cli import alerts as alertscli
from obslab import conventions as c
from obslab import topology
from obslab.rules import load_catalog
from obslab.services.alert_receiver.app import create_app
from tests.support import free_port, required_binary, serve, stop_process

NOTIFICATIONS = "/api/v1/notifications"

# As Alertmanager 0.25 posts it (webhook notifier, payload version 4): one group of two alerts.
FIRING = {
    "receiver": "paging",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "IISAppPoolDown", "app_pool": "RetailBanking", "instance": "iis-mock:9182",
                       "job": "iis", "service": "iis", "severity": "critical", "team": "windows-platform"},
            "annotations": {
                "summary": "IIS app pool RetailBanking is down",
                "description": "windows_iis_app_pool_state says RetailBanking has not been running for 1m.",
                "runbook_url": "http://localhost:8095/runbooks/IISAppPoolDown.md",
                "dashboard_url": "http://localhost:3000/d/obslab-iis",
            },
            "startsAt": "2026-11-23T10:15:02.114Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://localhost:9090/graph?g0.expr=windows_iis_app_pool_state%7Bstate%3D%22Running%22%7D+%3D%3D+0&g0.tab=1",
            "fingerprint": "5d4b3c6a1f2e7d80",
        },
        {
            "status": "firing",
            "labels": {"alertname": "IISSuccessRateLow", "instance": "iis-mock:9182", "job": "iis",
                       "service": "iis", "severity": "critical", "site": "RetailBanking",
                       "team": "windows-platform"},
            "annotations": {
                "summary": "IIS site RetailBanking succeeds for 91.2% of requests",
                "description": "Below the 99% objective for 5m.",
                "runbook_url": "http://localhost:8095/runbooks/IISSuccessRateLow.md",
                "dashboard_url": "http://localhost:3000/d/obslab-iis",
            },
            "startsAt": "2026-11-23T10:16:32.114Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://localhost:9090/graph?g0.expr=site%3Awindows_iis_success%3Apercent_rate5m+%3C+99&g0.tab=1",
            "fingerprint": "a0c9e12bb7745f31",
        },
    ],
    "groupLabels": {"service": "iis"},
    "commonLabels": {"instance": "iis-mock:9182", "job": "iis", "service": "iis", "severity": "critical",
                     "team": "windows-platform"},
    "commonAnnotations": {"dashboard_url": "http://localhost:3000/d/obslab-iis"},
    "externalURL": "http://localhost:9093",
    "version": "4",
    "groupKey": "{}/{severity=\"critical\"}:{service=\"iis\"}",
    "truncatedAlerts": 0,
}


def notification(receiver: str = "paging", status: str = "firing", alertname: str = "IISAppPoolDown",
                 **annotations: str) -> dict:
    body = copy.deepcopy(FIRING)
    body["receiver"] = receiver
    body["status"] = status
    body["alerts"] = body["alerts"][:1]
    alert = body["alerts"][0]
    alert["status"] = status
    alert["labels"]["alertname"] = alertname
    alert["annotations"].update(annotations)
    if status == "resolved":
        alert["endsAt"] = "2026-11-23T10:25:02.114Z"
    return body


@pytest.fixture
def receiver(tmp_path):
    server = serve(create_app(f"sqlite:///{tmp_path / 'alerts.sqlite3'}"))
    yield server
    server.stop()


def alertmanager_auth() -> dict[str, str]:
    """What Alertmanager sends with every webhook post (obslab/generators/amconfig.py: http_config)."""
    return {"Authorization": f"Bearer {secrets.control_token(topology.ALERTMANAGER_PRINCIPAL)}"}


def post(url: str, receiver: str, body, **kwargs) -> requests.Response:
    headers = {**alertmanager_auth(), **kwargs.pop("headers", {})}
    if isinstance(body, (dict, list)):
        kwargs["json"] = body
    else:
        kwargs["data"] = body
        headers.setdefault("Content-Type", "application/json")
    return requests.post(f"{url}/webhook/{receiver}", timeout=5, headers=headers, **kwargs)


def listed(url: str, **params) -> list[dict]:
    response = requests.get(f"{url}{NOTIFICATIONS}", params=params, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def metric(url: str, name: str, labels: dict[str, str]) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_a_real_alertmanager_payload_is_stored_and_listed_with_its_alerts(receiver):
    response = post(receiver.url, "paging", FIRING)
    assert response.status_code == 201, response.text
    assert response.json()["alerts"] == 2

    [stored] = listed(receiver.url)
    assert stored["id"] == response.json()["id"]
    assert (stored["receiver"], stored["status"], stored["group_key"]) == ("paging", "firing", FIRING["groupKey"])
    assert abs(stored["received_at"] - time.time()) < 60
    first, second = stored["alerts"]
    assert first["alertname"] == "IISAppPoolDown"
    assert (first["severity"], first["service"]) == ("critical", "iis")
    assert first["summary"] == "IIS app pool RetailBanking is down"
    assert first["runbook_url"] == "http://localhost:8095/runbooks/IISAppPoolDown.md"
    assert first["dashboard_url"] == "http://localhost:3000/d/obslab-iis"
    assert first["links_removed"] == [] and stored["links_removed"] == [], "the lab's own links are kept"
    assert first["starts_at"] == "2026-11-23T10:15:02.114Z"
    assert first["ends_at"] is None, "Go's zero time means 'still firing'"
    assert first["labels"]["app_pool"] == "RetailBanking"
    assert second["alertname"] == "IISSuccessRateLow"


def test_listing_is_newest_first_and_filters_by_receiver_status_and_alertname(receiver):
    sent = [
        ("paging", notification("paging", "firing", "IISAppPoolDown")),
        ("team-chat", notification("team-chat", "firing", "IISVolumeSurge")),
        ("paging", notification("paging", "resolved", "IISAppPoolDown")),
        ("deadman", notification("deadman", "firing", "Watchdog")),
    ]
    ids = []
    for name, body in sent:
        response = post(receiver.url, name, body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    assert [n["id"] for n in listed(receiver.url)] == ids[::-1]
    assert [n["id"] for n in listed(receiver.url, receiver="paging")] == [ids[2], ids[0]]
    assert [n["id"] for n in listed(receiver.url, status="resolved")] == [ids[2]]
    assert [n["id"] for n in listed(receiver.url, alertname="IISVolumeSurge")] == [ids[1]]
    assert [n["id"] for n in listed(receiver.url, receiver="paging", status="firing",
                                    alertname="IISAppPoolDown")] == [ids[0]]
    assert listed(receiver.url, receiver="nobody") == []
    assert [n["id"] for n in listed(receiver.url, limit=2)] == [ids[3], ids[2]]
    assert listed(receiver.url, status="resolved")[0]["alerts"][0]["ends_at"] == "2026-11-23T10:25:02.114Z"


@pytest.mark.parametrize("params, code", [
    ({"status": "pending"}, "invalid_status"), ({"limit": "0"}, "invalid_limit"), ({"limit": "1001"}, "invalid_limit"),
])
def test_bad_list_filters_get_a_400_naming_the_parameter(receiver, params, code):
    response = requests.get(f"{receiver.url}{NOTIFICATIONS}", params=params, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == code


def _without(key: str) -> dict:
    body = copy.deepcopy(FIRING)
    del body[key]
    return body


def _with(**changes) -> dict:
    return {**copy.deepcopy(FIRING), **changes}


def _alert_status(value: str) -> dict:
    body = copy.deepcopy(FIRING)
    body["alerts"][0]["status"] = value
    return body


@pytest.mark.parametrize("body, reason, expected_in_message", [
    ("this is not json", "not_json", "JSON object"),
    ("[1, 2]", "not_json", "JSON object"),
    ("", "not_json", "JSON object"),
    (_with(version="3"), "unsupported_version", 'version must be "4"'),
    (_without("version"), "unsupported_version", 'version must be "4"'),
    (_without("alerts"), "invalid_payload", "alerts"),
    (_with(alerts=[]), "invalid_payload", "alerts"),
    (_with(status="pending"), "invalid_payload", "status"),
    (_alert_status("silenced"), "invalid_payload", "alerts.0.status"),
    (_with(groupKey=""), "invalid_payload", "groupKey"),
], ids=["not-json", "json-list", "empty", "version-3", "no-version", "no-alerts", "empty-alerts",
        "bad-status", "bad-alert-status", "empty-group-key"])
def test_malformed_posts_get_a_400_with_a_clear_message_and_store_nothing(receiver, body, reason,
                                                                          expected_in_message):
    assert post(receiver.url, "paging", FIRING).status_code == 201
    before = listed(receiver.url)

    response = post(receiver.url, "paging", body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error"] in ("invalid_json", "unsupported_version", "invalid_request")
    assert expected_in_message in error["message"]
    assert listed(receiver.url) == before
    assert metric(receiver.url, c.ALERT_RECEIVER_REJECTED.name, {"reason": reason}) == 1.0


def test_notifications_survive_a_restart_on_the_same_database_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'alerts.sqlite3'}"
    first = serve(create_app(url))
    try:
        assert post(first.url, "paging", FIRING).status_code == 201
        assert post(first.url, "team-chat", notification("team-chat", "resolved")).status_code == 201
        before = listed(first.url)
    finally:
        first.stop()
    second = serve(create_app(url))
    try:
        assert listed(second.url) == before
        assert len(before) == 2
        assert post(second.url, "paging", notification()).status_code == 201
        assert len(listed(second.url)) == 3
    finally:
        second.stop()


def test_metrics_count_notifications_by_receiver_and_status(receiver):
    for name, status in [("paging", "firing"), ("paging", "firing"), ("paging", "resolved"), ("team-chat", "firing")]:
        assert post(receiver.url, name, notification(name, status)).status_code == 201
    assert post(receiver.url, "paging", "garbage").status_code == 400

    name = c.ALERT_RECEIVER_NOTIFICATIONS.name
    assert metric(receiver.url, name, {"receiver": "paging", "status": "firing"}) == 2.0
    assert metric(receiver.url, name, {"receiver": "paging", "status": "resolved"}) == 1.0
    assert metric(receiver.url, name, {"receiver": "team-chat", "status": "firing"}) == 1.0
    assert metric(receiver.url, c.ALERT_RECEIVER_REJECTED.name, {"reason": "not_json"}) == 1.0


def test_a_receiver_name_that_cannot_be_a_label_is_refused(receiver):
    response = post(receiver.url, "-" + "x" * 70, FIRING)
    assert response.status_code == 404
    assert response.json()["error"] == "invalid_receiver"
    assert listed(receiver.url) == []


def test_the_html_page_lists_notifications_with_links_and_escapes_annotations(receiver):
    evil = notification("paging", "firing", "IISAppPoolDown",
                        summary="<script>alert('x')</script>", dashboard_url="javascript:alert(1)")
    assert post(receiver.url, "paging", evil).status_code == 201
    assert post(receiver.url, "team-chat", notification("team-chat", "firing", "IISVolumeSurge")).status_code == 201

    response = requests.get(f"{receiver.url}/", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "javascript:" not in page
    assert 'href="http://localhost:8095/runbooks/IISAppPoolDown.md"' in page
    assert 'http-equiv="refresh"' in page
    assert page.index("IISVolumeSurge") < page.index("IISAppPoolDown"), "newest first"

    filtered = requests.get(f"{receiver.url}/", params={"receiver": "team-chat"}, timeout=5).text
    assert "IISVolumeSurge" in filtered and "&lt;script&gt;" not in filtered


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="obslab alerts")
    alertscli.add_arguments(parser)
    return alertscli.run(parser.parse_args(list(argv)))


def test_obslab_alerts_prints_a_table_of_what_arrived(receiver, capsys):
    assert post(receiver.url, "paging", FIRING).status_code == 201
    assert post(receiver.url, "team-chat", notification("team-chat", "resolved", "IISVolumeSurge")).status_code == 201

    assert _cli("--url", receiver.url) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "RECEIVER", "STATUS", "ALERTNAME", "SEVERITY", "SERVICE", "SUMMARY"]
    assert len(lines) == 4
    assert "team-chat" in lines[1] and "resolved" in lines[1] and "IISVolumeSurge" in lines[1]
    assert "IIS app pool RetailBanking is down" in lines[2]

    assert _cli("--url", receiver.url, "--receiver", "paging", "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert [n["receiver"] for n in body] == ["paging"]


def test_obslab_alerts_exits_2_with_one_line_when_the_receiver_is_unreachable(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert _cli("--url", url) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "not reachable" in err and url in err


# --- a real Alertmanager delivering to the receiver -------------------------------------------

AM_CONFIG = """
route:
  receiver: paging
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: paging
    webhook_configs:
      - url: {url}/webhook/paging
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {token_file}
"""


def test_a_real_alertmanager_delivers_an_alert_to_the_receiver(receiver, tmp_path):
    binary = required_binary("prometheus-alertmanager")
    config = tmp_path / "alertmanager.yml"
    token_file = secrets.secrets_dir() / secrets.token_file(topology.ALERTMANAGER_PRINCIPAL)
    config.write_text(AM_CONFIG.format(url=receiver.url, token_file=token_file))
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    am = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{am}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "alertmanager did not become ready"
            time.sleep(0.1)

        alert = {"labels": {"alertname": "IISAppPoolDown", "severity": "critical", "service": "iis"},
                 "annotations": {"summary": "IIS app pool RetailBanking is down",
                                 "runbook_url": "http://localhost:8095/runbooks/IISAppPoolDown.md"}}
        assert requests.post(f"{am}/api/v2/alerts", json=[alert], timeout=5).status_code == 200

        deadline = time.monotonic() + 20
        while not (got := listed(receiver.url, receiver="paging", alertname="IISAppPoolDown")):
            assert time.monotonic() < deadline, "no notification reached the receiver"
            time.sleep(0.2)
        [n] = got
        assert n["status"] == "firing"
        assert n["alerts"][0]["summary"] == "IIS app pool RetailBanking is down"
        assert n["group_key"] == '{}:{alertname="IISAppPoolDown"}'
        assert metric(receiver.url, c.ALERT_RECEIVER_NOTIFICATIONS.name, {"receiver": "paging", "status": "firing"}) == 1.0
    finally:
        stop_process(process)


# --- runbooks served at every alert's runbook_url -----------------------------------------------

RUNBOOKS = settings.repo_root() / "runbooks"


@pytest.mark.parametrize("name", load_catalog().alert_names())
def test_every_alerts_runbook_url_resolves_to_its_page_with_the_name_as_heading(receiver, name):
    path = urlsplit(topology.runbook_url(name)).path
    response = requests.get(f"{receiver.url}{path}", timeout=5)
    assert response.status_code == 200, f"{topology.runbook_url(name)}: {response.status_code} {response.text[:200]}"
    assert response.headers["Content-Type"].startswith("text/html")
    assert f"<h1>{name}</h1>" in response.text
    assert "<table>" in response.text, "the page's table is rendered as a table"
    assert '<code class="language-promql">' in response.text


def test_the_runbook_index_links_every_page_on_disk(receiver):
    response = requests.get(f"{receiver.url}/runbooks/", timeout=5)
    assert response.status_code == 200
    pages = sorted(p.name for p in RUNBOOKS.glob("*.md") if p.name != "README.md")
    assert pages
    for page in pages:
        assert f'href="/runbooks/{page}"' in response.text
    assert 'href="/runbooks/README.md"' in response.text
    assert requests.get(f"{receiver.url}/runbooks/README.md", timeout=5).status_code == 200
    redirected = requests.get(f"{receiver.url}/runbooks", timeout=5)
    assert redirected.url.endswith("/runbooks/") and redirected.status_code == 200


def test_an_unknown_runbook_is_a_404_with_a_json_error(receiver):
    response = requests.get(f"{receiver.url}/runbooks/NoSuchAlert.md", timeout=5)
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "runbook_not_found"
    assert "NoSuchAlert.md" in body["message"] and "/runbooks/" in body["message"]


@pytest.fixture
def runbooks_dir(tmp_path):
    """A runbooks folder with one page, and a file beside it that must never be served."""
    directory = tmp_path / "runbooks"
    directory.mkdir()
    (directory / "DemoAlert.md").write_text("# DemoAlert\n\nSome *text*.\n")
    (directory / "notes.txt").write_text("not a page\n")
    (tmp_path / "secret.md").write_text("# TOPSECRET\n")
    return directory


@pytest.fixture
def receiver_with(tmp_path, runbooks_dir):
    server = serve(create_app(f"sqlite:///{tmp_path / 'alerts.sqlite3'}", runbooks_dir=runbooks_dir))
    yield server
    server.stop()


def _raw_get(url: str, path: str, redirects: int = 1) -> tuple[int, bytes]:
    """GET with the path sent exactly as given (requests and browsers would normalise '..');
    a redirect on this server (Werkzeug merges '//') is followed the same way."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        status, body, location = response.status, response.read(), response.getheader("Location", "")
    finally:
        conn.close()
    if status in (301, 302, 307, 308) and redirects > 0:
        target = urlsplit(location)
        assert target.netloc in ("", parts.netloc), f"{path} redirects off this server: {location}"
        return _raw_get(url, target.path + (f"?{target.query}" if target.query else ""), redirects - 1)
    return status, body


@pytest.mark.parametrize("path", [
    "/runbooks/../secret.md", "/runbooks/..%2Fsecret.md", "/runbooks/..%2fsecret.md", "/runbooks/%2e%2e/secret.md",
    "/runbooks/%2E%2E%2Fsecret.md", "/runbooks/..\\secret.md", "/runbooks//etc/passwd", "/runbooks/notes.txt",
    "/runbooks/DemoAlert.md%00", "/runbooks/DemoAlert.md%0A", "/runbooks/sub/DemoAlert.md", "/runbooks/.md",
    "/runbooks/Demo.Alert.md", "/runbooks/DemoAlert.MD",
])
def test_anything_but_a_page_name_is_a_404_and_never_reads_outside_the_folder(receiver_with, path):
    status, body = _raw_get(receiver_with.url, path)
    assert status == 404, (path, status, body[:200])
    assert b"TOPSECRET" not in body and b"root:" not in body
    # Paths the router cannot even match (a leading '/', a newline) get its generic 404.
    assert json.loads(body)["error"] in ("runbook_not_found", "not_found")


def test_the_runbooks_folder_comes_from_obslab_runbooks_dir(tmp_path, runbooks_dir, monkeypatch):
    monkeypatch.setenv("OBSLAB_RUNBOOKS_DIR", str(runbooks_dir))
    server = serve(create_app(f"sqlite:///{tmp_path / 'alerts.sqlite3'}"))
    try:
        assert "<h1>DemoAlert</h1>" in requests.get(f"{server.url}/runbooks/DemoAlert.md", timeout=5).text
        assert requests.get(f"{server.url}/runbooks/Watchdog.md", timeout=5).status_code == 404
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["Watchdog", "IISAppPoolDown"])
def test_raw_mode_returns_the_files_bytes_as_markdown(receiver, name):
    expected = (RUNBOOKS / f"{name}.md").read_bytes()
    for kwargs in ({"params": {"raw": "1"}}, {"headers": {"Accept": "text/markdown"}}):
        response = requests.get(f"{receiver.url}/runbooks/{name}.md", timeout=5, **kwargs)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/markdown")
        assert response.content == expected
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    html_page = requests.get(f"{receiver.url}/runbooks/{name}.md", headers=browser, timeout=5)
    assert html_page.headers["Content-Type"].startswith("text/html")
    rendered = requests.get(f"{receiver.url}/runbooks/{name}.md", params={"raw": "0"}, timeout=5)
    assert rendered.headers["Content-Type"].startswith("text/html")


def test_a_bad_raw_value_is_a_400(receiver):
    response = requests.get(f"{receiver.url}/runbooks/Watchdog.md", params={"raw": "yes"}, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_raw"


def test_markup_in_a_runbook_is_shown_never_run(tmp_path, runbooks_dir):
    (runbooks_dir / "EvilAlert.md").write_text(
        "# EvilAlert\n\n<script>alert('x')</script>\n\n<img src=x onerror=alert(1)>\n\n"
        "[click](javascript:alert(1)) [next](DemoAlert.md)\n")
    server = serve(create_app(f"sqlite:///{tmp_path / 'alerts.sqlite3'}", runbooks_dir=runbooks_dir))
    try:
        response = requests.get(f"{server.url}/runbooks/EvilAlert.md", timeout=5)
    finally:
        server.stop()
    assert response.status_code == 200
    page = response.text
    assert "<script>" not in page and "<img" not in page and 'href="javascript:' not in page
    assert "&lt;script&gt;" in page
    assert '<a href="DemoAlert.md">next</a>' in page, "relative links between runbooks stay links"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_the_notification_page_links_an_alert_to_the_runbook_this_server_serves(tmp_path, monkeypatch):
    # A lab published under another name lists that host: its links are kept, not claimed as ours.
    monkeypatch.setenv("OBSLAB_LINK_HOSTS", "wiki.example")
    receiver = serve(create_app(f"sqlite:///{tmp_path / 'alerts.sqlite3'}"))
    try:
        assert post(receiver.url, "paging", FIRING).status_code == 201
        elsewhere = notification("team-chat", "firing", "IISVolumeSurge",
                                 runbook_url="https://wiki.example/IISVolumeSurge")
        assert post(receiver.url, "team-chat", elsewhere).status_code == 201
        own = f"http://127.0.0.1:{settings.port(c.ALERT_RECEIVER)}/runbooks/TargetDown.md"
        own_port = notification("team-chat", "firing", "TargetDown", runbook_url=own)
        assert post(receiver.url, "team-chat", own_port).status_code == 201
        page = requests.get(f"{receiver.url}/", timeout=5).text
        assert requests.get(f"{receiver.url}/runbooks/IISAppPoolDown.md", timeout=5).status_code == 200
    finally:
        receiver.stop()

    assert '<a href="/runbooks/IISAppPoolDown.md">IISAppPoolDown</a>' in page
    assert '<a href="/runbooks/IISSuccessRateLow.md">IISSuccessRateLow</a>' in page
    assert 'href="/runbooks/IISVolumeSurge.md"' not in page, "a runbook elsewhere is not claimed as ours"
    assert ">IISVolumeSurge<" in page and 'href="https://wiki.example/IISVolumeSurge"' in page
    # The runbook at this server's own address (a lab at a port offset links there) is ours.
    assert '<a href="/runbooks/TargetDown.md">TargetDown</a>' in page
    assert 'href="/runbooks/"' in page
