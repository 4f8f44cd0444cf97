"""`obslab slo report` against a real Prometheus serving known data.

One TSDB holds two stretches: a day of `obslab history` (raw series and simulated incidents, no
recorded rules, no alerts), and, a day later, three synthetic days written with promtool: the
recorded 5-minute error ratios of two SLOs (known burns), raw latency buckets for a third (the
report must compute the SLI itself, as on history), nothing for the fourth (no traffic), and
ALERTS series. Every expected figure is the integral of those piecewise-constant definitions,
computed here; Prometheus evaluates every 60 s, so the report reads a point a minute.
"""

from __future__ import annotations

import base64
import contextlib
import doctest
import io
import json
import time
from pathlib import Path

import pytest

from obslab.cli import main
from obslab.lab import backfill
from obslab.sim.incidents import iso8601
from obslab.slo import report
from tests.prometheus_support import start_prometheus

pytestmark = pytest.mark.prometheus

MIN, HOUR, DAY = 60, 3600, 86400
W = 3 * DAY                                    # the synthetic window
E = int(time.time() // DAY) * DAY              # its end: today, 00:00 UTC
S = E - W
HISTORY_END = S - DAY                          # `obslab history`: the day before, a day apart
BUDGET = 0.001                                 # 99.9 %: transfer and payment availability

# Transfer availability: 0.2x background, a 20x burn of 30 minutes, a 5x hour without an alert.
A = S + DAY + 10 * HOUR
B = S + 2 * DAY + 14 * HOUR
TRANSFER = [(S, E + MIN, 0.0002), (A + 5 * MIN, A + 35 * MIN, 0.02), (B, B + HOUR, 0.005)]
# Payment availability: clean, then 20 minutes of nothing but errors.
P = S + 2 * DAY + 3 * HOUR
PAYMENT = [(S, E + MIN, 0.0), (P, P + 20 * MIN, 1.0)]
# Transfer latency (99 %): 3 % of transfers slower than 1 s for two hours, as raw buckets only.
L = S + DAY + 2 * HOUR
SLOW = (L, L + 2 * HOUR, 0.03)
PER_MINUTE = 600

SLO_LABELS = {
    "transfer-availability": {"service": "transactions", "team": "core-banking"},
    "payment-availability": {"service": "payments", "team": "core-banking"},
}
BURN = {"alertname": "TransferAvailabilityBudgetBurn", "slo": "transfer-availability", "service": "transactions",
        "team": "core-banking", "severity": "critical"}
ALERTS = [   # labels, firing from, until
    ({**BURN, "long_window": "1h", "short_window": "5m"}, A + 10 * MIN, A + 35 * MIN),
    ({**BURN, "long_window": "6h", "short_window": "30m"}, A + 20 * MIN, A + 45 * MIN),
    ({"alertname": "ServiceErrorRateHigh", "service": "transactions", "team": "core-banking", "severity": "warning"},
     A + 5 * MIN, A + 20 * MIN),
    ({"alertname": "BankingServiceDown", "job": "payments", "instance": "127.0.0.1:8084", "tier": "banking",
      "service": "payments", "team": "core-banking", "severity": "critical"}, P, P + 20 * MIN),
    ({"alertname": "DDoSAttackSuspected", "service": "gateway", "team": "edge", "severity": "critical"},
     P + 10 * MIN, P + 30 * MIN),
    # Fires while no SLO burns: nobody's incident.
    ({"alertname": "IISVolumeSurge", "site": "OnlineBanking", "team": "windows-platform", "severity": "warning"},
     S + 12 * HOUR, S + 13 * HOUR),
    # Always firing: would claim every SLO's whole budget if it counted.
    ({"alertname": "Watchdog", "service": "alertmanager", "team": "platform", "severity": "info"}, S, E + MIN),
]


def value_at(pieces: list[tuple[int, int, float]], t: int) -> float:
    """The last piece covering t wins (background first, burns after)."""
    return [v for start, end, v in pieces if start <= t < end][-1]


def integral(pieces: list[tuple[int, int, float]], start: int, end: int) -> float:
    """Integral of the piecewise-constant ratio over [start, end), minute by minute."""
    return sum(value_at(pieces, t) * MIN for t in range(start, end, MIN))


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def write_synthetic(path: Path) -> None:
    stamps = range(S, E + 1, MIN)
    lines = []
    for slo, pieces in (("transfer-availability", TRANSFER), ("payment-availability", PAYMENT)):
        name = f'slo:sli_error:ratio_rate5m{{{_labels({"slo": slo, **SLO_LABELS[slo]})}}}'
        lines += [f"{name} {value_at(pieces, t)!r} {t}" for t in stamps]
    for labels, start, end in ALERTS:
        name = f'ALERTS{{{_labels({**labels, "alertstate": "firing"})}}}'
        lines += [f"{name} 1 {t}" for t in stamps if start <= t < end]
    route = {"service": "gateway", "method": "POST", "route": "/api/v1/transfers"}
    total = fast = 0
    inf_lines, fast_lines = [], []
    bucket = "http_server_request_duration_seconds_bucket"
    for t in stamps:
        inf_lines.append(f'{bucket}{{{_labels({**route, "le": "+Inf"})}}} {total} {t}')
        fast_lines.append(f'{bucket}{{{_labels({**route, "le": "1.0"})}}} {fast} {t}')
        slow = round(PER_MINUTE * SLOW[2]) if SLOW[0] <= t < SLOW[1] else 0
        total, fast = total + PER_MINUTE, fast + PER_MINUTE - slow
    path.write_text("\n".join(lines + inf_lines + fast_lines) + "\n# EOF\n")


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["slo", "report", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("slo-lab")
    tsdb = data_dir / "prometheus" / "data"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["history", "--days", "1", "--step", "150", "--data-dir", str(data_dir),
                     "--end", iso8601(HISTORY_END), "--no-wait"]) == 0
    synthetic = data_dir / "synthetic.om"
    write_synthetic(synthetic)
    process = backfill.create_blocks(synthetic, tsdb)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    prometheus = start_prometheus(data_dir / "work", data_dir=tsdb, scrape_interval="1m")
    try:
        yield {"url": prometheus.url, "data_dir": data_dir}
    finally:
        prometheus.stop()


@pytest.fixture(scope="module")
def synthetic(lab):
    code, out, _ = run_cli("--prometheus", lab["url"], "--data-dir", str(lab["data_dir"]), "--days", "3",
                           "--end", iso8601(E), "--json")
    assert code == 0
    body = json.loads(out)
    return {"body": body, "slos": {s["name"]: s for s in body["slos"]}}


def test_the_window_is_the_three_days_a_point_a_minute(synthetic):
    window = synthetic["body"]["window"]
    assert (window["start_unix"], window["end_unix"], window["step_seconds"]) == (S, E, MIN)
    assert window["hour_seconds"] == HOUR and window["days"] == 3 and window["data_from"] is None
    assert synthetic["body"]["profile"] == "production"


def test_achieved_and_budget_of_recorded_ratios(synthetic):
    for name, pieces in (("transfer-availability", TRANSFER), ("payment-availability", PAYMENT)):
        mean = integral(pieces, S, E) / W
        slo = synthetic["slos"][name]
        assert slo["traffic"] and slo["covered_seconds"] == W
        assert slo["objective"] == 0.999 and slo["error_budget"] == BUDGET
        assert slo["achieved"] == pytest.approx(1 - mean, abs=1e-12), name
        assert slo["budget"]["spent"] == pytest.approx(mean / BUDGET, rel=1e-9), name
        assert slo["budget"]["remaining"] == pytest.approx(1 - mean / BUDGET, rel=1e-9), name
        # three days of a thirty-day period
        assert slo["budget"]["spent_of_period"] == pytest.approx(mean / BUDGET * W / (30 * DAY), rel=1e-9), name


def test_worst_hours_rank_by_burn_rate(synthetic):
    hours = synthetic["slos"]["transfer-availability"]["worst_hours"]
    assert [h["start_unix"] for h in hours[:2]] == [A, B]
    assert hours[0]["end_unix"] == A + HOUR
    assert hours[0]["burn_rate"] == pytest.approx(integral(TRANSFER, A, A + HOUR) / HOUR / BUDGET, rel=1e-9)
    assert hours[0]["burn_rate"] == pytest.approx(10.1)
    assert hours[0]["budget_spent"] == pytest.approx(integral(TRANSFER, A, A + HOUR) / (BUDGET * W), rel=1e-9)
    assert hours[1]["burn_rate"] == pytest.approx(5.0)
    assert len(hours) == report.TOP_HOURS
    assert all(h["burn_rate"] == pytest.approx(0.2) for h in hours[2:])


def test_incidents_are_the_alerts_that_fired_while_the_slo_burned(synthetic):
    incidents = synthetic["slos"]["transfer-availability"]["incidents"]
    # The two window pairs of the burn alert are one incident, from the first pair to the last.
    assert [i["name"] for i in incidents] == [
        "TransferAvailabilityBudgetBurn{service=transactions,slo=transfer-availability}",
        "ServiceErrorRateHigh{service=transactions}",
    ]
    burn, errors = incidents
    assert (burn["start_unix"], burn["end_unix"], burn["minutes"]) == (A + 10 * MIN, A + 45 * MIN, 35)
    assert burn["severity"] == "critical" and burn["source"] == "alert"
    assert burn["labels"] == {"alertname": "TransferAvailabilityBudgetBurn", "service": "transactions",
                              "slo": "transfer-availability"}
    assert burn["budget_spent"] == pytest.approx(integral(TRANSFER, A + 10 * MIN, A + 45 * MIN) / (BUDGET * W),
                                                 rel=1e-9)
    assert burn["burn_rate"] == pytest.approx(integral(TRANSFER, A + 10 * MIN, A + 45 * MIN) / (35 * MIN) / BUDGET)
    assert errors["budget_spent"] == pytest.approx(integral(TRANSFER, A + 5 * MIN, A + 20 * MIN) / (BUDGET * W),
                                                   rel=1e-9)
    assert errors["burn_rate"] == pytest.approx(20.0)
    outside = integral(TRANSFER, S, E) - integral(TRANSFER, A + 5 * MIN, A + 45 * MIN)
    assert synthetic["slos"]["transfer-availability"]["budget"]["spent_without_incident"] == pytest.approx(
        outside / (BUDGET * W), rel=1e-9)

    payment = synthetic["slos"]["payment-availability"]["incidents"]
    assert [(i["labels"]["alertname"], i["budget_spent"]) for i in payment] == [
        ("BankingServiceDown", pytest.approx(20 * MIN / (BUDGET * W), rel=1e-9)),
        ("DDoSAttackSuspected", pytest.approx(10 * MIN / (BUDGET * W), rel=1e-9)),
    ]
    assert payment[1]["burn_rate"] == pytest.approx(500.0)
    assert synthetic["slos"]["payment-availability"]["budget"]["spent_without_incident"] == 0


def test_the_sli_is_computed_from_raw_series_where_no_rule_recorded_it(synthetic):
    slo = synthetic["slos"]["transfer-latency"]
    slow_share = SLOW[2] * (SLOW[1] - SLOW[0]) / W
    assert slo["traffic"] and slo["objective"] == 0.99
    # The first point has no rate yet (one sample in its 5 minutes).
    assert W - 2 * MIN <= slo["covered_seconds"] <= W
    assert slo["achieved"] == pytest.approx(1 - slow_share, abs=2e-6)
    assert slo["budget"]["spent"] == pytest.approx(slow_share / 0.01, rel=1e-2)
    assert slo["worst_hours"][0]["start_unix"] == L + HOUR
    assert slo["worst_hours"][0]["burn_rate"] == pytest.approx(SLOW[2] / 0.01, rel=1e-6)


def test_no_traffic_is_not_a_hundred_percent(synthetic):
    login = synthetic["slos"]["login-availability"]
    assert login["traffic"] is False and login["covered_seconds"] == 0
    assert login["achieved"] is None and login["budget"] is None
    assert login["worst_hours"] == [] and login["incidents"] == []


def test_json_shape(synthetic):
    body = synthetic["body"]
    assert set(body) == {"generated_at", "prometheus", "profile", "window", "slos"}
    assert set(body["window"]) == {"start", "end", "start_unix", "end_unix", "days", "step_seconds",
                                   "hour_seconds", "data_from"}
    assert [s["name"] for s in body["slos"]] == ["transfer-availability", "transfer-latency",
                                                 "login-availability", "payment-availability"]
    for slo in body["slos"]:
        assert set(slo) == {"name", "title", "service", "team", "alert", "objective", "error_budget", "period",
                            "period_seconds", "traffic", "covered_seconds", "achieved", "budget", "worst_hours",
                            "incidents"}
        assert slo["period"] == "30d" and slo["period_seconds"] == 30 * DAY
    slo = synthetic["slos"]["transfer-availability"]
    assert set(slo["budget"]) == {"spent", "remaining", "spent_of_period", "spent_without_incident"}
    assert set(slo["worst_hours"][0]) == {"start", "end", "start_unix", "end_unix", "burn_rate", "budget_spent"}
    assert set(slo["incidents"][0]) == {"name", "source", "labels", "severity", "start", "end", "start_unix",
                                        "end_unix", "minutes", "burn_rate", "budget_spent"}
    assert slo["incidents"][0]["start"] == iso8601(A + 10 * MIN)


def test_text_and_html(lab, tmp_path):
    page = tmp_path / "slo.html"
    code, out, _ = run_cli("--prometheus", lab["url"], "--days", "3", "--end", iso8601(E), "--html", str(page))
    assert code == 0
    assert "login-availability     99.9 %     no traffic" in out
    transfer = next(line for line in out.splitlines() if line.startswith("transfer-availability "))
    mean = integral(TRANSFER, S, E) / W
    assert f"{(1 - mean) * 100:.3f} %" in transfer and f"{mean / BUDGET * 100:.1f} %" in transfer
    hour = time.strftime("%Y-%m-%d %H:%M", time.gmtime(A))
    assert f"  {hour}-{time.strftime('%H:%M', time.gmtime(A + HOUR))}  10.1x" in out
    assert "ServiceErrorRateHigh{service=transactions}" in out and "Watchdog" not in out
    assert f"HTML report: {page}" in out

    text = page.read_text()
    pictures = text.split('src="data:image/png;base64,')[1:]
    assert len(pictures) == 4       # one per SLO
    for picture in pictures:
        assert base64.b64decode(picture.split('"', 1)[0]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "No traffic in the window" in text and "Transfer availability" in text
    assert "ServiceErrorRateHigh{service=transactions}" in text


def test_fast_profile_hours_and_period(lab, tmp_path):
    """A fast lab's hour is 6 minutes and its period 3 days (SLO windows / 10): read from the lab."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "lab.json").write_text(json.dumps({"profile": "fast", "components": []}))
    code, out, _ = run_cli("--prometheus", lab["url"], "--data-dir", str(tmp_path), "--days", "3",
                           "--end", iso8601(E), "--json")
    assert code == 0
    body = json.loads(out)
    assert body["profile"] == "fast" and body["window"]["hour_seconds"] == 360
    transfer = next(s for s in body["slos"] if s["name"] == "transfer-availability")
    assert transfer["period_seconds"] == 3 * DAY
    # A window as long as the fast period spends the same share of both.
    assert transfer["budget"]["spent_of_period"] == pytest.approx(transfer["budget"]["spent"], rel=1e-9)
    worst = transfer["worst_hours"][0]
    assert (worst["start_unix"], worst["end_unix"]) == (A + 6 * MIN, A + 12 * MIN)   # the first 6 minutes all at 20x
    assert worst["burn_rate"] == pytest.approx(20.0)


def test_history_incidents_spend_the_budget(lab):
    """On `obslab history` (raw series, no rules, no alerts) the SLIs come from the raw series and
    the simulated incidents are the incidents: fraud down fails transfers and payments."""
    code, out, _ = run_cli("--prometheus", lab["url"], "--data-dir", str(lab["data_dir"]), "--days", "1",
                           "--end", iso8601(HISTORY_END), "--json")
    assert code == 0
    truth = json.loads((lab["data_dir"] / "history" / "incidents.json").read_text())
    outage = next(i for i in truth if i["kind"] == "unavailable" and i["target"] == "fraud")
    slos = {s["name"]: s for s in json.loads(out)["slos"]}
    for name in ("transfer-availability", "payment-availability"):
        slo = slos[name]
        # 15 minutes of failing requests in a day: about 1 % of them, ten times the budget.
        assert slo["achieved"] < 0.995 and slo["budget"]["spent"] > 5, name
        top = slo["incidents"][0]
        assert (top["name"], top["source"]) == ("history: unavailable fraud", "history"), name
        assert (top["start_unix"], top["end_unix"]) == (outage["start_unix"], outage["end_unix"])
        assert top["budget_spent"] > 0.8 * slo["budget"]["spent"], name
    assert slos["login-availability"]["budget"]["spent"] < 0.5    # logins do not need fraud


def test_the_default_window_is_what_prometheus_holds_when_less_than_a_week(lab):
    code, out, _ = run_cli("--prometheus", lab["url"], "--json")
    assert code == 0
    window = json.loads(out)["window"]
    held = (time.time() - (HISTORY_END - DAY)) / DAY        # history's first day until now: 5-6 days
    assert window["days"] == pytest.approx(held, abs=0.01)


@pytest.mark.parametrize("args, message", [
    (["--days", "0"], "--days must be at least 1"),
    (["--days", "9", "--end", iso8601(E)], "Prometheus holds 5.0 days before"),
    (["--end", iso8601(E + 2 * DAY)], "is in the future"),
])
def test_refusals_are_one_line(lab, capsys, args, message):
    assert main(["slo", "report", "--prometheus", lab["url"], *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_an_absent_prometheus_is_one_line(capsys):
    assert main(["slo", "report", "--prometheus", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "Prometheus is not reachable at http://127.0.0.1:9" in err and err.count("\n") == 1


def test_doctests():
    assert doctest.testmod(report).failed == 0
