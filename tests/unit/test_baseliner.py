"""The baseliner's configuration and its behaviour without Prometheus (live scoring: the ML e2e)."""

from __future__ import annotations

import numpy as np
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
                                                         "ensemble", "levelNovelty"]


class RecordedSeries(PrometheusClient):
    """A Prometheus that answers every expression with one recorded series (the arithmetic of
    the baseliner is under test here; the client's own queries are tested against a real one)."""

    def __init__(self, value_at) -> None:
        super().__init__("http://127.0.0.1:9", timeout=0.1)
        self.value_at = value_at

    def range(self, expr, start, end, step):
        from obslab.ml.prometheus import RangeResult

        timestamps = np.arange(start, end + step / 2, step)
        return RangeResult(timestamps, [{}], np.array([[self.value_at(t) for t in timestamps]]))

    def scalar(self, expr, at=None):
        return self.value_at(at)


NOW = 1_700_000_000.0


def _scores(value_at):
    from obslab.ml.baseliner import Target

    target = Target(name="gateway_request_rate", service="gateway", expr="x", min_half_width=1.0)
    app = create_app(prometheus=RecordedSeries(value_at), profile=FAST, targets=(target,), start=False)
    return app.extensions["baseliner"].score(NOW)["gateway_request_rate"].bands


def _noise(t):
    return 100.0 + 5.0 * np.sin(t / 7.0) + 3.0 * np.cos(t / 3.1)


def test_the_score_that_pages_is_level_novelty_confirmed_by_the_ensemble_band():
    calm = _scores(_noise)
    assert calm["levelNovelty"][3] == 0.0 and calm["ensemble"][3] < 0.5
    spike = _scores(lambda t: 300.0 if t >= NOW else _noise(t))
    assert spike["levelNovelty"][3] == 1.0 and spike["ensemble"][3] > 0.5
    lower, upper = spike["levelNovelty"][1:3]
    assert 90 < lower < 100 < upper < 110, "levelNovelty's band is the range visited before"


def test_a_new_level_is_news_until_it_has_lasted_the_adoption_time_then_it_is_normal():
    assert FAST.baseline_adopt_s == 180
    recent = _scores(lambda t: 300.0 if t >= NOW - 60 else _noise(t))       # held for a minute
    assert recent["levelNovelty"][3] == 1.0 and recent["ensemble"][3] > 0.5
    lasting = _scores(lambda t: 300.0 if t >= NOW - 600 else _noise(t))     # held for ten minutes
    assert lasting["levelNovelty"][3] == 0.0 and lasting["ensemble"][3] == 0.0


def test_one_outlier_in_the_reference_neither_widens_every_bin_nor_makes_its_level_familiar():
    def with_outlier(t):
        if t >= NOW:
            return 200.0                                   # a doubling, now
        return 2000.0 if abs(t - (NOW - 600)) < 1 else _noise(t)    # one stray point ten minutes ago
    doubled = _scores(with_outlier)
    assert doubled["levelNovelty"][3] == 1.0 and doubled["ensemble"][3] > 0.5
    back_to_the_outlier = _scores(lambda t: 2000.0 if t >= NOW or abs(t - (NOW - 600)) < 1 else _noise(t))
    assert back_to_the_outlier["levelNovelty"][3] == 1.0, "one visit does not make a level familiar"


def test_until_a_series_has_a_settled_reference_the_band_alone_decides():
    young = _scores(lambda t: (300.0 if t >= NOW else _noise(t)) if t >= NOW - 150 else float("nan"))
    assert "levelNovelty" not in young
    assert young["ensemble"][3] > 0.5, "the band still flags a spike while levelNovelty learns"


def test_a_profile_that_never_settles_a_level_is_refused():
    import dataclasses

    with pytest.raises(ValueError, match="baseline_adopt_s"):
        dataclasses.replace(FAST, baseline_adopt_s=FAST.baseline_history_s)
