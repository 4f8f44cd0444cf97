"""Attacks on the alert-receiver (what the on-call reads and clicks) and on the trace sink's
body handling, each over real HTTP on 127.0.0.1, each test named after the attack it stops.

* fake pages: a webhook post needs a control token (Alertmanager's or the operator's), and a
  real Alertmanager 0.25 sends it from ``credentials_file``;
* phishing links: ``runbook_url``/``dashboard_url`` to anything but the lab's hosts are never
  shown (stored as received, emptied in every view, named in ``links_removed``);
* clickjacking and script injection: CSP without scripts, ``frame-ancestors 'none'``, nosniff;
* resource exhaustion: a 1 MiB webhook body limit, retention by count and age, and a trace sink
  that inflates gzip/deflate as a stream with a cap.
"""

from __future__ import annotations

import copy
import gzip
import json
import resource
import secrets as random_secrets
import sqlite3
import subprocess
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
import requests
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from obslab import secrets, settings
from obslab.generators import amconfig
from obslab import topology
from obslab.lab import trace_sink
from obslab.lab.trace_sink import create_app as create_trace_sink
from obslab.services.alert_receiver.app import create_app
from tests.support import free_port, required_binary, serve, stop_process

NOTIFICATIONS = "/api/v1/notifications"
MiB = 1024 * 1024

PAGE = {
    "version": "4",
    "groupKey": '{}/{severity="critical"}:{alertname="BankingServiceDown", service="payments"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "pager",
    "groupLabels": {"alertname": "BankingServiceDown", "service": "payments"},
    "commonLabels": {"alertname": "BankingServiceDown", "severity": "critical", "service": "payments"},
    "commonAnnotations": {},
    "externalURL": "http://localhost:9093",
    "alerts": [{
        "status": "firing",
        "labels": {"alertname": "BankingServiceDown", "severity": "critical", "service": "payments",
                   "team": "core-banking"},
        "annotations": {
            "summary": "payments is down",
            "description": "payments has not answered its health check for 1m.",
            "runbook_url": topology.runbook_url("BankingServiceDown"),
            "dashboard_url": topology.dashboard_url("obslab-services"),
        },
        "startsAt": "2026-11-23T10:15:02.114Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://localhost:9090/graph",
        "fingerprint": "0123456789abcdef",
    }],
}


def page(**annotations: str) -> dict:
    body = copy.deepcopy(PAGE)
    body["alerts"][0]["annotations"].update(annotations)
    return body


def bearer(principal: str = topology.ALERTMANAGER_PRINCIPAL) -> dict[str, str]:
    return {"Authorization": f"Bearer {secrets.control_token(principal)}"}


def post(url: str, body, receiver: str = "pager", headers: dict[str, str] | None = None,
         **kwargs) -> requests.Response:
    headers = bearer() if headers is None else headers
    if isinstance(body, dict):
        kwargs["json"] = body
    else:
        kwargs["data"] = body
        headers = {"Content-Type": "application/json", **headers}
    return requests.post(f"{url}/webhook/{receiver}", headers=headers, timeout=10, **kwargs)


def listed(url: str, **params) -> list[dict]:
    response = requests.get(f"{url}{NOTIFICATIONS}", params={"limit": 1000, **params}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def metric(url: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=5).text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


@pytest.fixture
def database(tmp_path) -> Path:
    return tmp_path / "alerts.sqlite3"


@pytest.fixture
def receiver(database):
    server = serve(create_app(f"sqlite:///{database}"))
    yield server
    server.stop()


# --- fake pages ---------------------------------------------------------------------------------

def test_a_stranger_cannot_post_a_fake_page_without_the_token(receiver):
    fake = page(summary="URGENT: log in to the bank's admin console now")
    response = post(receiver.url, fake, headers={})
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "unauthenticated" and "Bearer" in response.json()["message"]
    # Another scheme carrying the right token is not the bearer token either.
    basic = {"Authorization": f"Basic {secrets.control_token(topology.ALERTMANAGER_PRINCIPAL)}"}
    assert post(receiver.url, fake, headers=basic).status_code == 401
    assert listed(receiver.url) == []
    assert metric(receiver.url, "alert_receiver_rejected_total", {"reason": "unauthenticated"}) == 2.0


@pytest.mark.parametrize("token", ["not-a-token", random_secrets.token_urlsafe(32),
                                   "obslab-compose-lab-secret-change-me"],
                         ids=["garbage", "random", "published-default"])
def test_a_forged_or_guessed_token_cannot_post_a_fake_page(receiver, token):
    response = post(receiver.url, page(), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert listed(receiver.url) == []
    assert metric(receiver.url, "alert_receiver_rejected_total", {"reason": "invalid_token"}) == 1.0


def test_a_stranger_cannot_post_a_fake_page_even_under_a_name_no_receiver_has(receiver):
    # The token is checked before anything else: an unauthenticated caller learns nothing.
    response = post(receiver.url, "not even json", receiver="-" * 70, headers={})
    assert response.status_code == 401


def test_only_alertmanager_and_the_operator_may_post_a_page(receiver):
    assert post(receiver.url, page(), headers=bearer(topology.ALERTMANAGER_PRINCIPAL)).status_code == 201
    assert post(receiver.url, page(), headers=bearer(topology.OPERATOR)).status_code == 201
    assert len(listed(receiver.url)) == 2


# --- phishing links -----------------------------------------------------------------------------

def _stored_payloads(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT payload FROM notifications ORDER BY id")]


def test_a_page_with_a_link_to_a_foreign_host_is_stored_without_that_link(receiver, database):
    phishing = "https://bank-login.example/runbooks/BankingServiceDown.md"
    assert post(receiver.url, page(runbook_url=phishing)).status_code == 201

    [stored] = listed(receiver.url)
    [alert] = stored["alerts"]
    assert alert["runbook_url"] == "" and alert["annotations"]["runbook_url"] == ""
    assert alert["links_removed"] == ["runbook_url"] and stored["links_removed"] == ["runbook_url"]
    assert alert["dashboard_url"] == topology.dashboard_url("obslab-services"), "a lab link stays"
    assert alert["summary"] == "payments is down"

    html_page = requests.get(f"{receiver.url}/", timeout=5).text
    assert "bank-login.example" not in html_page
    assert "link removed" in html_page
    assert 'href="/runbooks/BankingServiceDown.md"' not in html_page, "a foreign runbook is not claimed as ours"
    assert f'href="{topology.dashboard_url("obslab-services")}"' in html_page
    # Decision: the payload is kept as Alertmanager sent it (the evidence of what was attempted);
    # only the views, which filter every read, ever show it.
    [raw] = _stored_payloads(database)
    assert phishing in raw


@pytest.mark.parametrize("url", [
    "https://evil.example/runbook",
    "http://evil.example\\@localhost:8095/runbooks/X.md",     # browsers: host evil.example
    "http://localhost:8095@evil.example/runbooks/X.md",       # user info: host evil.example
    "http://evil.example@localhost:8095/runbooks/X.md",       # user info, even towards the lab
    "http://localhost:8095.evil.example/runbooks/X.md",
    "http://localhost.evil.example:8095/",
    "http://localhost:3001/d/obslab-services",                # a lab host, another port
    "http://localhost:8095 /runbooks/X.md",
    "http://localhost:8095\t.evil.example/",
    "//evil.example/runbooks/X.md",
    "javascript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "ftp://localhost:8095/runbooks/X.md",
    "http://[::1]:8095/runbooks/X.md",
    "http://localhost:99999/",
    "http://[evil.example/runbooks/X.md",                     # urllib cannot even split it
    "https://localhost:3000@evil.example/d/x",
])
def test_a_link_that_only_looks_like_a_lab_host_is_removed(receiver, url):
    assert post(receiver.url, page(runbook_url=url, dashboard_url=url)).status_code == 201
    [alert] = listed(receiver.url)[0]["alerts"]
    assert (alert["runbook_url"], alert["dashboard_url"]) == ("", "")
    assert alert["links_removed"] == ["runbook_url", "dashboard_url"]
    assert url not in requests.get(f"{receiver.url}/", timeout=5).text


def test_a_lab_published_under_another_name_keeps_its_links_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("OBSLAB_LINK_HOSTS", " wiki.bank.example , grafana.bank.example:8443 ")
    monkeypatch.setenv("OBSLAB_PORT_OFFSET", "1000")
    server = serve(create_app(f"sqlite:///{tmp_path / 'alerts.sqlite3'}"))
    try:
        kept = {
            "https://wiki.bank.example/runbooks/BankingServiceDown": True,
            "https://grafana.bank.example:8443/d/obslab-services": True,
            # This lab's own alert-receiver (8095 + offset) serves its runbooks.
            "http://127.0.0.1:9095/runbooks/BankingServiceDown.md": True,
            "http://localhost:9095/runbooks/BankingServiceDown.md": True,
            "https://grafana.bank.example/d/obslab-services": False,      # not that port
            "https://wiki.bank.example:8443/x": False,
            "http://127.0.0.1:9096/runbooks/BankingServiceDown.md": False,
        }
        for url in kept:
            assert post(server.url, page(runbook_url=url)).status_code == 201
        shown = [n["alerts"][0]["runbook_url"] for n in reversed(listed(server.url))]
        assert shown == [url if keep else "" for url, keep in kept.items()]
        html_page = requests.get(f"{server.url}/", timeout=5).text
        assert '<a href="/runbooks/BankingServiceDown.md">BankingServiceDown</a>' in html_page
    finally:
        server.stop()


def test_a_malformed_link_hosts_setting_stops_the_receiver_from_starting(tmp_path, monkeypatch):
    monkeypatch.setenv("OBSLAB_LINK_HOSTS", "https://wiki.bank.example/")
    with pytest.raises(settings.ConfigError, match="OBSLAB_LINK_HOSTS"):
        create_app(f"sqlite:///{tmp_path / 'alerts.sqlite3'}")


# --- clickjacking, script injection, sniffing -------------------------------------------------------

def test_the_notifications_page_cannot_be_framed_or_run_scripts(receiver):
    assert post(receiver.url, page(summary="<script>alert(1)</script>")).status_code == 201
    for path in ("/", "/runbooks/", "/runbooks/BankingServiceDown.md"):
        response = requests.get(f"{receiver.url}{path}", timeout=5)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html"), path
        policy = {d.split()[0]: d.split()[1:] for d in response.headers["Content-Security-Policy"].split(";")
                  if d.strip()}
        assert policy["default-src"] == ["'none'"] and policy["script-src"] == ["'none'"], path
        assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"], path
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Referrer-Policy"] == "no-referrer", path
        assert "<script" not in response.text, path


def test_json_and_markdown_answers_cannot_be_sniffed_into_a_page(receiver):
    for method, path, status in (("GET", NOTIFICATIONS, 200), ("GET", "/runbooks/Watchdog.md?raw=1", 200),
                                 ("GET", "/runbooks/Nope.md", 404), ("POST", "/webhook/pager", 401)):
        response = requests.request(method, f"{receiver.url}{path}", timeout=5)
        assert response.status_code == status, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path


# --- resource exhaustion -------------------------------------------------------------------------

def test_a_huge_webhook_body_is_refused_with_413_and_nothing_is_stored(receiver):
    huge = page(description="x" * (3 * MiB // 2))   # over the limit, under what waitress refuses itself
    response = post(receiver.url, huge)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large" and "KiB" in response.json()["message"]

    # Without Content-Length (chunked) the same: never cut at the limit and parsed.
    body = json.dumps(page()).encode()
    chunks = [body[:-1], b" " * (MiB + 1024), body[-1:]]    # valid JSON once whole, > 1 MiB
    response = requests.post(f"{receiver.url}/webhook/pager", data=iter(chunks), timeout=10,
                             headers={**bearer(), "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"

    assert listed(receiver.url) == []
    assert metric(receiver.url, "alert_receiver_rejected_total", {"reason": "too_large"}) == 2.0
    # Just under the limit is fine.
    assert post(receiver.url, page(description="y" * (MiB - 4096))).status_code == 201


def _insert_raw(app, count: int) -> None:
    from obslab.services.alert_receiver.schema import WebhookPayload

    store = app.extensions["notification_store"]
    payload = WebhookPayload.model_validate(PAGE)
    for _ in range(count):
        store.add("pager", payload, PAGE)


def test_old_notifications_are_pruned_by_count_and_age(database, monkeypatch):
    monkeypatch.setenv("OBSLAB_RECEIVER_MAX_NOTIFICATIONS", "5")
    server = serve(create_app(f"sqlite:///{database}"))
    try:
        ids = [post(server.url, page()).json()["id"] for _ in range(12)]
        kept = [n["id"] for n in listed(server.url)]
        assert 4 <= len(kept) <= 5, kept
        assert kept == ids[::-1][:len(kept)], "the newest are kept"
    finally:
        server.stop()
    with sqlite3.connect(database) as conn:
        alert_rows = {row[0] for row in conn.execute("SELECT notification_id FROM notification_alerts")}
        assert alert_rows == set(kept), "a pruned notification's alerts go with it"
        # Two of them are older than the retention (168 h by default).
        old = sorted(kept)[:2]
        eight_days_ago = int((time.time() - 8 * 24 * 3600) * 1000)
        conn.executemany("UPDATE notifications SET received_at_ms = ? WHERE id = ?",
                         [(eight_days_ago, i) for i in old])

    # The next insert (here: by the receiver started again) removes what aged out.
    server = serve(create_app(f"sqlite:///{database}"))
    try:
        newest = post(server.url, page()).json()["id"]
        after = [n["id"] for n in listed(server.url)]
    finally:
        server.stop()
    assert not set(old) & set(after)
    assert after == [newest, *[i for i in kept if i not in old]][:5]
    with sqlite3.connect(database) as conn:
        assert {row[0] for row in conn.execute("SELECT notification_id FROM notification_alerts")} == set(after)


def test_retention_costs_no_table_scan_on_every_insert(database, monkeypatch):
    """A flood of notifications must not make every insert count or delete: once full, the
    receiver prunes in 1% batches (max 400: 4 at a time) and never runs COUNT(*)."""
    from sqlalchemy import event

    monkeypatch.setenv("OBSLAB_RECEIVER_MAX_NOTIFICATIONS", "400")
    app = create_app(f"sqlite:///{database}")
    _insert_raw(app, 400)
    statements: list[str] = []
    engine = app.extensions["obslab"].db.engine
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2].lower()))
    _insert_raw(app, 100)
    deletes = [s for s in statements if s.lstrip().startswith("delete from notifications")]
    assert 20 <= len(deletes) <= 30, len(deletes)
    assert not any("count(" in s for s in statements)
    with sqlite3.connect(database) as conn:
        assert 396 <= conn.execute("SELECT COUNT(*) FROM notifications").fetchone()[0] <= 400


def test_a_superscript_digit_in_limit_is_a_400_not_a_500(receiver):
    for value in ("²", "١٢", "-1", "1e3", " 5"):
        response = requests.get(f"{receiver.url}{NOTIFICATIONS}", params={"limit": value}, timeout=5)
        assert response.status_code == 400, (value, response.status_code, response.text)
        assert response.json()["error"] == "invalid_limit"


# --- the trace sink: a gzip bomb --------------------------------------------------------------------

def _bomb(inflated: int, wbits: int) -> bytes:
    """``inflated`` zero bytes, compressed (without ever holding them: one zero MiB, reused)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(MiB)
    out = [compressor.compress(zeros) for _ in range(inflated // MiB)]
    return b"".join(out) + compressor.flush()


@pytest.fixture
def sink(tmp_path):
    server = serve(create_trace_sink(str(tmp_path / "sink")))
    yield server
    server.stop()


def test_a_gzip_bomb_to_the_trace_sink_is_refused_without_inflating_it(sink):
    bomb = _bomb(200 * MiB, 16 + zlib.MAX_WBITS)
    assert len(bomb) < 210 * 1024, "the attack: ~200 KiB on the wire"

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
    tracemalloc.start()
    try:
        response = requests.post(f"{sink.url}/v1/traces", data=bomb, timeout=60,
                                 headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before

    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"
    assert "OBSLAB_TRACE_MAX_INFLATED_BYTES" in response.json()["message"]
    cap = trace_sink.DEFAULT_MAX_INFLATED_BYTES
    print(f"gzip bomb: {len(bomb)} B sent, traced peak {peak / MiB:.1f} MiB, "
          f"max RSS growth {rss_growth / 1024:.1f} MiB (cap {cap // MiB} MiB, bomb 200 MiB)")
    assert peak < cap + 8 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert rss_growth < 100 * 1024, f"max RSS grew {rss_growth / 1024:.1f} MiB"


def test_a_deflate_bomb_and_a_corrupt_stream_are_refused_with_json(sink):
    headers = {"Content-Type": "application/x-protobuf"}
    deflate_bomb = _bomb(80 * MiB, zlib.MAX_WBITS)
    response = requests.post(f"{sink.url}/v1/traces", data=deflate_bomb, timeout=30,
                             headers={**headers, "Content-Encoding": "deflate"})
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"

    valid = gzip.compress(ExportTraceServiceRequest().SerializeToString())
    for body, encoding in ((valid[:-6], "gzip"), (b"\x1f\x8b" + b"junk" * 10, "gzip"), (b"nope", "deflate")):
        response = requests.post(f"{sink.url}/v1/traces", data=body, timeout=10,
                                 headers={**headers, "Content-Encoding": encoding})
        assert response.status_code == 400, (body[:10], response.text)
        assert response.json()["error"] == "invalid_otlp_request"


# --- a real Alertmanager sends its token ---------------------------------------------------------

AM_ROUTE = {
    "receiver": "pager",
    "group_by": ["alertname"],
    "group_wait": "1s",
    "group_interval": "1s",
    "repeat_interval": "1h",
    "routes": [{"receiver": "forged", "matchers": ['via="forged"']}],
}


def _failed_webhook_sends(am_url: str) -> float:
    text = requests.get(f"{am_url}/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "alertmanager_notifications_failed_total"
               and sample.labels.get("integration") == "webhook")


def test_alertmanager_delivers_with_the_lab_token_and_a_wrong_token_file_delivers_nothing(receiver, tmp_path):
    """The generated webhook_config (obslab/generators/amconfig.py) on the real Alertmanager 0.25: the
    receiver whose credentials_file holds the lab's token stores the page; the one with another
    token gets a 401 for every try, and nothing of it is stored."""
    binary = required_binary("prometheus-alertmanager")
    wrong = tmp_path / "wrong-token"
    wrong.write_text(random_secrets.token_urlsafe(32))
    right = secrets.secrets_dir() / secrets.token_file(topology.ALERTMANAGER_PRINCIPAL)
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump({
        "route": AM_ROUTE,
        "receivers": [
            {"name": name, "webhook_configs": [amconfig.webhook_config(f"{receiver.url}/webhook/{name}", str(token))]}
            for name, token in (("pager", right), ("forged", wrong))
        ],
    }))
    amtool = subprocess.run([required_binary("amtool"), "check-config", str(config)], capture_output=True,
                            text=True, timeout=30)
    assert amtool.returncode == 0, amtool.stdout + amtool.stderr

    port = free_port()
    am = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        def wait(check, what: str, timeout: float = 20):
            deadline = time.monotonic() + timeout
            while not (result := check()):
                assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
                assert time.monotonic() < deadline, what
                time.sleep(0.2)
            return result

        def ready() -> bool:
            try:
                return requests.get(f"{am}/-/ready", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait(ready, "alertmanager did not become ready")
        alerts = [{"labels": {"alertname": name, "severity": "critical", "service": "payments", "via": via},
                   "annotations": {"summary": f"{name} via {via}"}}
                  for name, via in (("RealPage", "lab"), ("ForgedPage", "forged"))]
        assert requests.post(f"{am}/api/v2/alerts", json=alerts, timeout=5).status_code == 200

        [stored] = wait(lambda: listed(receiver.url, receiver="pager"), "the page with the lab token was not stored")
        assert stored["alerts"][0]["alertname"] == "RealPage"
        wait(lambda: _failed_webhook_sends(am) >= 1, "alertmanager never tried the receiver with the wrong token")
        assert metric(receiver.url, "alert_receiver_rejected_total", {"reason": "invalid_token"}) >= 1
        assert listed(receiver.url, receiver="forged") == []
        assert [n["alerts"][0]["alertname"] for n in listed(receiver.url)] == ["RealPage"]
    finally:
        stop_process(process)
        log.close()
