"""What a person reads: the live status line and the final summary."""

from obslab.services.loadgen.recorder import Recorder, percentile
from obslab.services.loadgen.status import clock_text, status_line, summary


def _recorder() -> Recorder:
    now = [100.0]
    recorder = Recorder(clock=lambda: now[0])
    for _ in range(8):
        recorder.journey_started("check_balances")
        recorder.request("list_accounts", "ok", 0.040)
    recorder.request("failed_login", "client_error", 0.2)
    recorder.request("transfer", "server_error", 0.9)
    recorder.request("register", "rate_limited", 0.01)
    recorder.request("setup_login", "ok", 0.3, kind="setup")
    recorder.request("flood_no_token", "client_error", 0.002, kind="flood")
    recorder.journey("check_balances", "ok")
    recorder.journey("transfer", "error", "transfer: HTTP 503 dependency_unavailable")
    recorder.journey("pay", "dropped")
    recorder.replay(True)
    return recorder


def test_the_status_line_shows_rate_against_target_outcomes_latency_and_flood():
    line = status_line(_recorder().snapshot(), elapsed=83, target=2.0, phase="running", users="200/200",
                       flood="flood 812/1000 rps from 2000 sources")
    assert line.startswith("01:23 running | 0.8/s of 2.0 journeys/s | req 11 (1 4xx, 1 429, 1 failed)")
    assert "p50/p95 40/900ms" in line
    assert "flood 812/1000 rps from 2000 sources" in line and "1 dropped" in line and line.endswith("users 200/200")
    assert "\n" not in line


def test_the_summary_counts_journeys_requests_setup_flood_and_names_the_errors():
    text = summary(_recorder().snapshot(), elapsed=3723, reason="ran for 1h")
    assert text.splitlines()[0] == "Load run finished after 1:02:03 (ran for 1h)."
    assert "journeys: 2 run (dropped 1, error 1, ok 1)" in text
    assert "by kind:  check_balances 1, transfer 1" in text
    assert "requests: 11 (client_error 1, ok 8, rate_limited 1, server_error 1), plus 1 to set customers up" in text
    assert "1 replayed, all answered identically" in text
    assert "errors:   transfer: HTTP 503 dependency_unavailable (1x)" in text
    assert "flood: 1 requests" in text


def test_setup_and_flood_requests_do_not_count_against_the_request_budget():
    snap = _recorder().snapshot()
    assert (snap.requests, snap.setup_requests, snap.flood_requests) == (11, 1, 1)


def test_percentiles_are_nearest_rank_and_clock_text_is_compact():
    assert percentile([], 50) is None
    assert percentile([5, 1, 4, 2, 3], 95) == 5
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    assert clock_text(59) == "00:59" and clock_text(3600) == "1:00:00"
