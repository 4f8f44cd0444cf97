"""The baseliner's configuration and its behaviour without Prometheus (live scoring: the ML e2e)."""

from __future__ import annotations

import pytest

from obslab import settings
from obslab.ml.baseliner import DEFAULT_TARGETS, create_app, load_targets
from obslab.ml.prometheus import PrometheusClient
from obslab.profiles import FAST


def test_the_default_targets_cover_the_golden_signals_of_edge_banking_and_iis():
    services = {t.service for t in DEFAULT_TARGETS}
    assert {"gateway", "transactions", "payments", "iis"} <= services
    assert len({t.name for t in DEFAULT_TARGETS}) == len(DEFAULT_TARGETS)
    assert all(t.min_half_width > 0 for t in DEFAULT_TARGETS)


def test_a_targets_file_replaces_the_defaults(tmp_path):
    path = tmp_path / "targets.yml"
    path.write_text("- {name: login_rate, service: auth, expr: 'sum(rate(http_server_requests_total[5m]))'}\n")
    (target,) = load_targets(str(path))
    assert (target.name, target.service, target.min_half_width) == ("login_rate", "auth", 0.0)


@pytest.mark.parametrize("text, problem", [
    ("[]", "non-empty list"),
    ("- {name: Bad-Name, service: auth, expr: up}\n", "name"),
    ("- {name: a, service: auth}\n", "expr"),
    ("- {name: a, service: auth, expr: up, colour: red}\n", "colour"),
    ("- {name: a, service: auth, expr: up}\n- {name: a, service: auth, expr: up}\n", "unique"),
])
def test_a_bad_targets_file_names_the_file_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "targets.yml"
    path.write_text(text)
    with pytest.raises(settings.ConfigError, match=problem) as error:
        load_targets(str(path))
    assert str(path) in str(error.value)


def test_without_prometheus_every_gauge_is_withdrawn_and_the_baseliner_says_stale():
    app = create_app(prometheus=PrometheusClient("http://127.0.0.1:9", timeout=0.5), profile=FAST, start=False)
    baseliner = app.extensions["baseliner"]
    assert baseliner.score() == {}
    client = app.test_client()
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'ml_input_stale{detector="baseliner"} 1.0' in metrics
    assert "baseline_expected_value{" not in metrics
    assert client.get("/health").status_code == 200
    status = client.get("/api/v1/status").get_json()
    assert status["stale"] and "unreachable" in status["reason"]
    assert [a["name"] for a in status["algorithms"]] == ["zscore", "seasonalMad", "holtWinters", "quantile",
                                                         "ensemble"]
