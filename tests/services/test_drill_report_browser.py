"""A drill report as a person sees it: the alert-receiver on 127.0.0.1 serves a posted report and
a real headless Chromium loads it (under the page's script-free CSP), renders the timeline SVG,
the expectation table and the verdict, and paints a screenshot that is not blank."""

from __future__ import annotations

import os
import subprocess

import pytest
import requests

from obslab.services.alert_receiver.app import create_app
from tests.services.test_alert_receiver_drills import DRILLS, REPORT
from tests.support import control_headers, serve

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_S = 60
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--no-first-run", "--no-default-browser-check"]


def chromium() -> str:
    """The browser; a laptop without it skips, CI must have it (`obslab doctor --install --mariadb`)."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    message = (f"{CHROMIUM} is missing: run `obslab doctor --install --mariadb` (what `make test` runs) "
               "or `apt-get install --no-install-recommends chromium`")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def served_report(tmp_path):
    chromium()   # skip (or fail on CI) before starting anything
    server = serve(create_app(f"sqlite:///{tmp_path / 'alerts.sqlite3'}"))
    try:
        response = requests.post(f"{server.url}{DRILLS}", json=REPORT, headers=control_headers(), timeout=10)
        assert response.status_code == 201, response.text
        yield f"{server.url}/drills/{REPORT['run_id']}"
    finally:
        server.stop()


def _browse(*args: str, profile) -> subprocess.CompletedProcess:
    # Its own profile folder, so that no other Chromium's lock or state gets in the way.
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def test_chromium_renders_the_report_with_its_timeline_table_and_verdict(served_report, tmp_path):
    result = _browse("--dump-dom", served_report, profile=tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "<svg" in dom and 'class="timeline-svg"' in dom, "the timeline picture"
    assert 'class="fault-window"' in dom and "<polyline" in dom
    assert dom.count('<tr class="expectation">') == len(REPORT["alerts"]), "one row per expected alert"
    assert "PaymentAvailabilityBudgetBurn" in dom and "1.1×" in dom
    assert '<span class="badge fail">FAILED</span>' in dom, "the verdict badge"


def test_chromium_paints_a_screenshot_of_the_report(served_report, tmp_path):
    shot = tmp_path / "report.png"
    result = _browse(f"--screenshot={shot}", "--window-size=1280,1600", served_report, profile=tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG"
    assert len(data) > 10 * 1024, f"a {len(data)}-byte screenshot is blank or nearly so"
