"""The alert-receiver over real HTTP: Alertmanager webhook posts are stored, listed, filtered and
counted; malformed posts are refused with a 400 and change nothing; a real Alertmanager delivers
to it; ``obslab alerts`` shows what arrived."""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from obslab import alertscli
from obslab.services.alert_receiver import ALERT_RECEIVER_NOTIFICATIONS, ALERT_RECEIVER_REJECTED
from obslab.services.alert_receiver.app import create_app
from tests.support import free_port, serve

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


def post(url: str, receiver: str, body, **kwargs) -> requests.Response:
    if isinstance(body, (dict, list)):
        kwargs["json"] = body
    else:
        kwargs["data"] = body
        kwargs.setdefault("headers", {"Content-Type": "application/json"})
    return requests.post(f"{url}/webhook/{receiver}", timeout=5, **kwargs)


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
    assert metric(receiver.url, ALERT_RECEIVER_REJECTED.name, {"reason": reason}) == 1.0


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

    name = ALERT_RECEIVER_NOTIFICATIONS.name
    assert metric(receiver.url, name, {"receiver": "paging", "status": "firing"}) == 2.0
    assert metric(receiver.url, name, {"receiver": "paging", "status": "resolved"}) == 1.0
    assert metric(receiver.url, name, {"receiver": "team-chat", "status": "firing"}) == 1.0
    assert metric(receiver.url, ALERT_RECEIVER_REJECTED.name, {"reason": "not_json"}) == 1.0


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
"""


@pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None, reason="prometheus-alertmanager is not installed")
def test_a_real_alertmanager_delivers_an_alert_to_the_receiver(receiver, tmp_path):
    config = tmp_path / "alertmanager.yml"
    config.write_text(AM_CONFIG.format(url=receiver.url))
    port = free_port()
    process = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
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
        assert metric(receiver.url, ALERT_RECEIVER_NOTIFICATIONS.name, {"receiver": "paging", "status": "firing"}) == 1.0
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
