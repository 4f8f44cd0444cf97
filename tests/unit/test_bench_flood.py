"""``obslab bench flood``'s arithmetic: what counts as an answer, what a probe reports, the report.

The benchmark itself runs a lab for minutes and prints figures (obslab/bench/README.md); it is
not a test."""

from __future__ import annotations

import doctest

import pytest

from obslab.bench import flood
from obslab.lab.native import LabError

METRICS = """\
# HELP http_server_requests_total Requests answered
# TYPE http_server_requests_total counter
http_server_requests_total{code="401",method="GET",route="/api/v1/accounts",service="gateway"} 120.0
http_server_requests_total{code="400",method="POST",route="/api/v1/auth/login",service="gateway"} 30.0
http_server_requests_total{code="401",method="GET",route="/api/v1/transfers",service="gateway"} 5.0
http_server_requests_total{code="200",method="GET",route="/health",service="gateway"} 99.0
http_server_requests_total{code="200",method="GET",route="/api/v1/accounts",service="accounts"} 7.0
http_server_requests_created{code="401",method="GET",route="/api/v1/accounts",service="gateway"} 1.7e9
"""


def test_doctests():
    assert doctest.testmod(flood).failed == 0


def test_answers_count_the_gateways_api_routes_by_code_not_health_or_other_services():
    assert flood.answers_by_code(METRICS) == {"401": 125.0, "400": 30.0}


def test_a_probe_reports_only_its_window_with_percentiles_and_the_share_answered_as_wanted():
    probe = flood.Probe("customer", send=None, want=200)
    probe.samples = [(1.0, 900.0, False)] + [(10.0 + i, float(i), i % 10 != 0) for i in range(100)] \
        + [(500.0, 1.0, True)]
    figures = probe.figures(10.0, 110.0)
    assert figures["requests"] == 100 and figures["ok_percent"] == 90.0
    assert figures["p50_ms"] == pytest.approx(49.5, abs=1) and figures["p99_ms"] == pytest.approx(98, abs=1)
    assert probe.figures(200.0, 300.0) == {"requests": 0, "ok_percent": None, "p50_ms": None, "p99_ms": None}


@pytest.mark.parametrize("changes", [{"rps": 0}, {"seconds": 2}, {"repeats": 0}, {"senders": -1}])
def test_options_out_of_range_are_refused_with_what_to_fix(changes):
    fields = {"rps": 3000, "seconds": 20.0, "repeats": 3, "warmup": 30.0, "senders": 0, "port_offset": 17000}
    with pytest.raises(LabError, match="--"):
        flood.Options(**{**fields, **changes}).check()


def test_the_report_reads_the_medians_the_codes_and_both_probes():
    def window(answers, gateway):
        return {"answers_per_second": answers, "by_code": {"401": answers * 0.7, "400": answers * 0.3},
                "gateway_cpu_percent": gateway, "cpu_percent": {"gateway": gateway, "auth": 30.0}}

    probes = {"bot": {"ok_percent": 100.0, "p50_ms": 60.0, "p99_ms": 150.0},
              "customer": {"ok_percent": 99.0, "p50_ms": 80.0, "p99_ms": 160.0}}
    result = {"rps": 3000, "commit": "abc1234", "senders": "lab default", "repeats": 2, "window_seconds": 20,
              "quiet": {"answers_per_second": 16.0, "gateway_cpu_percent": 7.0,
                        "probes": {"customer": {"p99_ms": 18.0}}},
              "flood": {"answers_per_second": {"min": 300, "median": 310, "max": 320},
                        "gateway_cpu_percent": {"min": 78, "median": 79, "max": 80},
                        "gateway_cpu_ms_per_answer": {"min": 2.4, "median": 2.5, "max": 2.6},
                        "machine_cpu_percent": {"min": 150, "median": 155, "max": 160},
                        "probes": probes, "windows": [window(300, 78), window(320, 80)]}}
    text = flood.report(result)
    assert "gateway answers/s           310 (min 300, max 320)" in text
    assert "401 217/s" in text and "400 93/s" in text
    assert "gateway 79 %, auth 30 %" in text
    assert "a customer's accounts list  p50 80.0 ms, p99 160.0 ms, 99.0 % answered as expected" in text
