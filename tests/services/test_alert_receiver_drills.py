"""Drill reports and drill events at the alert-receiver, over real HTTP on 127.0.0.1: stored (on
SQLite and MariaDB), listed newest first, replaced by run id, pruned by count; posted only with
the operator's control token; validated with errors that name the field; shown as escaped HTML
pages whose timeline is an inline SVG. The page renderer is also checked alone, on a full report
and on one whose every field is null."""

from __future__ import annotations

import copy
import json

import pytest
import requests

from obslab import topology
from obslab.services.alert_receiver.app import create_app
from obslab.services.alert_receiver.drill_pages import NULL, render_index, render_report
from tests.support import control_headers, serve

DRILLS = "/api/v1/drills"
EVENTS = "/api/v1/drills/events"
MiB = 1024 * 1024

REPORT = {
    "run_id": "20261206T153000Z-payments-outage", "name": "payments-outage", "title": "Every card payment fails",
    "story": "Card payments fail for every customer; the on-call is paged.", "cause": "service-errors",
    "profile": "fast", "passed": False,
    "started_at": 1765035000.0, "fault_started_at": 1765035010.0, "fault_ended_at": 1765035100.0,
    "ended_at": 1765035160.0,
    "faults": [{"kind": "error_rate", "target": "payments", "params": {"rate": 100}, "start_s": 0.0, "end_s": 90.0,
                "id": "flt_x"}],
    "alerts": [{"alert": "PaymentAvailabilityBudgetBurn", "labels": {"long_window": "1h"}, "receiver": "pager",
                "fired_seconds": 41.2, "notified_seconds": 43.0, "floor_seconds": 40.0, "deadline_seconds": 120.0,
                "resolved_seconds": 35.1, "resolve_deadline_seconds": 120.0, "passed": True, "why": ""},
               {"alert": "ServiceErrorRateHigh", "labels": {"service": "payments"}, "receiver": "team-chat",
                "fired_seconds": None, "notified_seconds": None, "floor_seconds": 60.0, "deadline_seconds": 180.0,
                "resolved_seconds": None, "resolve_deadline_seconds": None, "passed": False,
                "why": "never fired"}],
    "quiet": [{"alert": "DDoSAttackSuspected", "labels": {}, "inhibited_ok": False, "passed": True, "why": ""}],
    "diagnose": [{"runbook": "PaymentAvailabilityBudgetBurn", "query": "sum(rate(x[5m])) > 0",
                  "condition": "> 0.5", "before": 0.0, "during": 0.93, "passed": True}],
    "unexpected": ["TransferLatencyHigh"],
    "problems": ["ServiceErrorRateHigh: waited 180 s for a firing notification at team-chat; saw none"],
    "timeline": {
        "alerts": [
            {"alert": "PaymentAvailabilityBudgetBurn", "labels": {"long_window": "1h"}, "state": "pending",
             "from_s": 30.0, "to_s": 41.2},
            {"alert": "PaymentAvailabilityBudgetBurn", "labels": {"long_window": "1h"}, "state": "firing",
             "from_s": 41.2, "to_s": 125.1},
        ],
        "notifications": [
            {"alert": "PaymentAvailabilityBudgetBurn", "receiver": "pager", "status": "firing", "at_s": 43.0},
            {"alert": "PaymentAvailabilityBudgetBurn", "receiver": "pager", "status": "resolved", "at_s": 126.0},
        ],
        "series": [{"name": "payment error ratio", "query": "sum(rate(errors[1m])) / sum(rate(requests[1m]))",
                    "points": [[-10.0, 0.01], [0.0, 0.02], [10.0, 0.9], [90.0, 0.92], [100.0, 0.1], [140.0, 0.0]]}],
    },
    "report": "/var/lib/obslab/drills/20261206T153000Z-payments-outage/report.json",
}


def report(run_id: str = REPORT["run_id"], **changes) -> dict:
    body = copy.deepcopy(REPORT)
    body["run_id"] = run_id
    body.update(changes)
    return body


def post_report(url: str, body, headers=None) -> requests.Response:
    headers = control_headers() if headers is None else headers
    if isinstance(body, (dict, list)):
        return requests.post(f"{url}{DRILLS}", json=body, headers=headers, timeout=10)
    return requests.post(f"{url}{DRILLS}", data=body, timeout=10,
                         headers={**headers, "Content-Type": "application/json"})


def post_event(url: str, body, headers=None) -> requests.Response:
    headers = control_headers() if headers is None else headers
    return requests.post(f"{url}{EVENTS}", json=body, headers=headers, timeout=10)


def listed(url: str, **params) -> list[dict]:
    response = requests.get(f"{url}{DRILLS}", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def receiver(db_url_for):
    """On SQLite and on MariaDB (the compose lab's MySQL stores the same tables)."""
    server = serve(create_app(db_url_for("alert-receiver")))
    yield server
    server.stop()


@pytest.fixture
def lite(tmp_path):
    server = serve(create_app(f"sqlite:///{tmp_path / 'alerts.sqlite3'}"))
    yield server
    server.stop()


# --- storage ------------------------------------------------------------------------------------


def test_a_posted_report_is_listed_and_returned_exactly_as_sent(receiver):
    response = post_report(receiver.url, REPORT)
    assert response.status_code == 201, response.text
    assert response.json() == {"run_id": REPORT["run_id"]}

    assert listed(receiver.url) == [{
        "run_id": REPORT["run_id"], "name": "payments-outage", "title": "Every card payment fails",
        "passed": False, "profile": "fast", "started_at": 1765035000.0,
    }]
    got = requests.get(f"{receiver.url}{DRILLS}/{REPORT['run_id']}", timeout=10)
    assert got.status_code == 200 and got.headers["Content-Type"].startswith("application/json")
    assert got.json() == REPORT, "every field, the runner's own included, is kept as sent"


def test_posting_the_same_run_again_replaces_it(receiver):
    assert post_report(receiver.url, REPORT).status_code == 201
    again = report(passed=True, title="Every card payment fails (rerun)", extra={"note": "second"})
    assert post_report(receiver.url, again).status_code == 201

    [row] = listed(receiver.url)
    assert (row["passed"], row["title"]) == (True, "Every card payment fails (rerun)")
    assert requests.get(f"{receiver.url}{DRILLS}/{REPORT['run_id']}", timeout=10).json() == again


def test_reports_are_listed_newest_first_by_their_start(receiver):
    for run_id, started in (("r-middle", 2000.0), ("r-newest", 3000.0), ("r-oldest", 1000.0)):
        assert post_report(receiver.url, report(run_id, started_at=started)).status_code == 201
    assert [r["run_id"] for r in listed(receiver.url)] == ["r-newest", "r-middle", "r-oldest"]
    assert [r["run_id"] for r in listed(receiver.url, limit=1)] == ["r-newest"]


def test_the_oldest_reports_are_pruned_beyond_the_maximum(db_url_for, monkeypatch):
    monkeypatch.setenv("OBSLAB_RECEIVER_MAX_DRILL_REPORTS", "3")
    server = serve(create_app(db_url_for("alert-receiver")))
    try:
        for i in range(5):
            assert post_report(server.url, report(f"run-{i}", started_at=1000.0 + i)).status_code == 201
        assert [r["run_id"] for r in listed(server.url)] == ["run-4", "run-3", "run-2"]
        assert requests.get(f"{server.url}{DRILLS}/run-0", timeout=10).status_code == 404
        # Replacing a kept run does not push another out.
        assert post_report(server.url, report("run-2", started_at=1002.0, passed=True)).status_code == 201
        assert [r["run_id"] for r in listed(server.url)] == ["run-4", "run-3", "run-2"]
    finally:
        server.stop()


def test_an_unknown_report_is_a_404_with_a_json_error(lite):
    for path in (f"{DRILLS}/no-such-run", "/drills/no-such-run", "/drills/bad%20id"):
        response = requests.get(f"{lite.url}{path}", timeout=10)
        assert response.status_code == 404, path
        assert response.json()["error"] == "drill_report_not_found", path


# --- validation -----------------------------------------------------------------------------------


def _without(key: str) -> dict:
    body = copy.deepcopy(REPORT)
    del body[key]
    return body


@pytest.mark.parametrize("body, field", [
    (_without("run_id"), "run_id"),
    (report("has space"), "run_id"),
    (report("a/b"), "run_id"),
    (report("x" * 121), "run_id"),
    (report("run\n"), "run_id"),
    (report(name="Payments Outage"), "name"),
    (report(name=None), "name"),
    (report(passed="yes"), "passed"),
    (report(passed=None), "passed"),
    (report(started_at="2026-12-06T15:30:00Z"), "started_at"),
    (report(started_at=True), "started_at"),
    (_without("started_at"), "started_at"),
], ids=["no-run-id", "space", "slash", "too-long", "newline", "name-not-slug", "name-null", "passed-string",
        "passed-null", "started-at-string", "started-at-bool", "no-started-at"])
def test_an_invalid_report_gets_a_400_naming_the_field_and_is_not_stored(lite, body, field):
    response = post_report(lite.url, body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error"] == "invalid_request"
    assert error["message"].startswith(f"{field}:")
    assert [f["field"] for f in error["fields"]] == [field]
    assert listed(lite.url) == []


@pytest.mark.parametrize("body", ["not json", "[1, 2]", "", '{"run_id": "r", "started_at": NaN}'],
                         ids=["text", "list", "empty", "nan"])
def test_a_body_that_is_not_a_json_object_gets_a_400(lite, body):
    response = post_report(lite.url, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_json"


def test_a_report_may_be_larger_than_a_webhook_but_not_over_2_mib(lite):
    big = report(story="x" * (3 * MiB // 2))    # over the webhook's 1 MiB
    assert post_report(lite.url, big).status_code == 201
    huge = report("huge", story="x" * (5 * MiB // 2))
    response = post_report(lite.url, huge)
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"
    assert [r["run_id"] for r in listed(lite.url)] == [REPORT["run_id"]]
    # Every other route keeps the receiver's 1 MiB.
    event = {"run_id": "r", "drill": "payments-outage", "event": "start", "at": 1.0, "pad": "x" * (3 * MiB // 2)}
    assert post_event(lite.url, event).status_code == 413


@pytest.mark.parametrize("changes, field", [
    ({"event": "middle"}, "event"), ({"at": "soon"}, "at"), ({"passed": "no"}, "passed"),
    ({"drill": "Bad Name"}, "drill"), ({"run_id": ""}, "run_id"),
])
def test_an_invalid_event_gets_a_400_naming_the_field(lite, changes, field):
    body = {"run_id": "r1", "drill": "payments-outage", "event": "start", "at": 1765035000.0, **changes}
    response = post_event(lite.url, body)
    assert response.status_code == 400, response.text
    assert response.json()["fields"][0]["field"] == field


# --- who may post -----------------------------------------------------------------------------------


START = {"run_id": REPORT["run_id"], "drill": "payments-outage", "event": "start", "at": 1765035000.0, "passed": None}


@pytest.mark.parametrize("post", [post_report, post_event], ids=["report", "event"])
def test_posting_without_credentials_is_a_401_and_stores_nothing(lite, post):
    body = REPORT if post is post_report else START
    for headers, code in (({}, "unauthenticated"), ({"Authorization": "Bearer not-a-lab-token"}, "invalid_token")):
        response = post(lite.url, body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == code
    assert listed(lite.url) == []
    assert "payments-outage" not in requests.get(f"{lite.url}/", timeout=10).text


@pytest.mark.parametrize("post", [post_report, post_event], ids=["report", "event"])
def test_alertmanagers_token_cannot_post_drills(lite, post):
    body = REPORT if post is post_report else START
    response = post(lite.url, body, headers=control_headers(topology.ALERTMANAGER_PRINCIPAL))
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "forbidden"
    assert listed(lite.url) == []


def test_reading_reports_needs_no_credentials(lite):
    assert post_report(lite.url, REPORT).status_code == 201
    for path in (DRILLS, f"{DRILLS}/{REPORT['run_id']}", "/drills", f"/drills/{REPORT['run_id']}"):
        assert requests.get(f"{lite.url}{path}", timeout=10).status_code == 200, path


# --- the pages ----------------------------------------------------------------------------------------


def test_the_report_page_escapes_everything_and_runs_nothing(lite):
    evil = report(title="<script>alert(1)</script>", story="<img src=x onerror=alert(1)>",
                  problems=["<b>bold</b>"])
    evil["alerts"][0]["why"] = '"><script>alert(2)</script>'
    evil["timeline"]["notifications"][0]["receiver"] = "</title><script>alert(3)</script>"
    assert post_report(lite.url, evil).status_code == 201

    response = requests.get(f"{lite.url}/drills/{REPORT['run_id']}", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;/title&gt;&lt;script&gt;alert(3)" in page
    assert "script-src 'none'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]

    index = requests.get(f"{lite.url}/drills", timeout=10).text
    assert "<script" not in index and "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    assert f'href="/drills/{REPORT["run_id"]}"' in index


def test_the_report_page_shows_the_timeline_and_the_tables(lite):
    assert post_report(lite.url, REPORT).status_code == 201
    page = requests.get(f"{lite.url}/drills/{REPORT['run_id']}", timeout=10).text
    assert "<svg" in page and 'class="fault-window"' in page and "<polyline" in page
    assert page.count('<tr class="expectation">') == 2
    assert '<span class="badge fail">FAILED</span>' in page
    assert "<code>sum(rate(x[5m])) &gt; 0</code>" in page
    assert 'href="/runbooks/PaymentAvailabilityBudgetBurn.md"' in page


def test_the_front_page_links_the_reports_and_shows_drill_events_newest_first(lite):
    assert post_event(lite.url, START).status_code == 201
    assert post_event(lite.url, START).status_code == 201, "a retried post replaces, never duplicates"
    end = {**START, "event": "end", "at": START["at"] + 160, "passed": False}
    assert post_event(lite.url, end).status_code == 201

    page = requests.get(f"{lite.url}/", timeout=10).text
    assert '<a href="/drills">Drill reports</a>' in page
    rows = page.split('<tr class="drill-event">')[1:]
    assert len(rows) == 2
    assert "ended" in rows[0] and "failed" in rows[0]
    assert "started" in rows[1]
    assert f'href="/drills/{REPORT["run_id"]}"' in rows[0]
    assert page.index("drill-event") < page.index("<h2>Notifications</h2>"), "drills above notifications"


# --- the renderer alone ---------------------------------------------------------------------------------


def test_a_report_whose_every_field_is_null_renders_with_an_svg():
    nulls = {key: None for key in REPORT}
    for page in (render_report(nulls), render_report({}), render_report(None)):  # type: ignore[arg-type]
        assert "<svg" in page and "</svg>" in page
        assert "NaN" not in page and "None" not in page


def test_a_report_with_null_and_malformed_parts_still_renders():
    broken = report(faults=[None, 3, {"kind": None, "start_s": None, "end_s": "later"}],
                    alerts=[{"alert": None, "fired_seconds": None, "floor_seconds": 0, "passed": None}, "x"],
                    quiet=[{}], diagnose=[{"query": None, "before": float("nan"), "during": float("inf")}],
                    unexpected=None, problems=[None, "real problem"],
                    timeline={"alerts": [{"alert": "A", "from_s": None}, {"alert": "B", "from_s": 5, "to_s": None,
                                                                         "state": "firing"}],
                              "notifications": [{"alert": "C", "at_s": None}, {"alert": "B", "at_s": "x"}],
                              "series": [{"name": None, "points": [[None, 1], [1], "x", [2, None], [3, 0.5]]},
                                         {"points": None}]})
    page = render_report(broken)
    assert "<svg" in page and "real problem" in page
    assert ">nan<" not in page.lower() and ">inf<" not in page.lower() and "NaN" not in page
    assert f"<td class=\"num\">{NULL}</td>" in page, "a missing number shows as a dash"


def test_numbers_have_one_decimal_and_the_notified_to_floor_ratio_is_shown():
    page = render_report(REPORT)
    row = page.split('<tr class="expectation">')[1]
    for shown in ("41.2", "43.0", "40.0", "1.1×", "120.0", "35.1"):
        assert shown in row, shown
    second = page.split('<tr class="expectation">')[2]
    assert second.count(NULL) >= 4 and "never fired" in second


def test_the_timeline_marks_faults_alert_states_notifications_and_the_fault_window():
    page = render_report(REPORT)
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert svg.count('class="fault-window"') == 1
    assert "error_rate → payments" in svg
    assert 'class="state pending"' in svg and 'class="state firing"' in svg
    assert 'class="notification firing"' in svg and 'class="notification resolved"' in svg
    assert "resolved notification of PaymentAvailabilityBudgetBurn at pager, 126.0 s" in svg
    assert "fault start" in svg and "fault end" in svg
    assert svg.count("<polyline") == 1


def test_the_index_lists_newest_first_and_escapes():
    rows = [{"run_id": "old", "name": "a-drill", "title": "Old", "passed": True, "profile": "fast", "started_at": 1.0},
            {"run_id": "new", "name": "a-drill", "title": "<i>New</i>", "passed": False, "profile": None,
             "started_at": 2.0},
            {"run_id": "undated", "name": None, "title": None, "passed": None, "profile": None, "started_at": None}]
    page = render_index(rows)
    assert page.index('href="/drills/new"') < page.index('href="/drills/old"') < page.index('href="/drills/undated"')
    assert "<i>" not in page and "&lt;i&gt;New&lt;/i&gt;" in page
    assert "PASSED" in page and "FAILED" in page
    json.dumps(rows)  # the rows are what GET /api/v1/drills returns
