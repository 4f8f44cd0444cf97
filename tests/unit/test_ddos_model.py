"""The DDoS detector's features, models, persistence and service behaviour without a lab."""

from __future__ import annotations

import json

import numpy as np
import pytest

from obslab import conventions as c
from obslab.ml.ddos import store
from obslab.ml.ddos.features import FEATURE_NAMES, Windows, exprs, feature_matrix, feature_row
from obslab.ml.ddos.model import HOSTILE_LEVEL, DDoSModel, validation_figures
from obslab.ml.ddos.training import (
    ANY,
    MILD,
    Dataset,
    NotEnoughData,
    demand_changes,
    prior,
    split,
    synthetic_attacks,
)
from obslab.ml.prometheus import PrometheusClient
from obslab.profiles import FAST

F = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _signals(requests=20.0, clients=50.0, auth=0.2, limited=0.0, errors=0.0, top=0.05, p95=0.08, in_flight=3.0,
             base_requests=20.0, base_clients=50.0, base_p95=0.08, base_in_flight=3.0):
    return {"requests": requests, "auth_failures": auth, "rate_limited": limited, "server_errors": errors,
            "clients": clients, "top_client_share": top, "latency_p95": p95, "in_flight": in_flight,
            "requests_baseline": base_requests, "clients_baseline": base_clients,
            "latency_p95_baseline": base_p95, "in_flight_baseline": base_in_flight}


def _observed_normal(rng: np.random.Generator, count: int = 300) -> np.ndarray:
    """Normal rows as the live features produce them: growth features near 0, small shares."""
    rows = []
    for _ in range(count):
        demand = rng.uniform(0.8, 1.25)
        rows.append(feature_row(_signals(
            requests=20 * demand * rng.normal(1, 0.05), clients=50 * demand * rng.normal(1, 0.05),
            auth=20 * demand * rng.uniform(0.0, 0.03), top=rng.uniform(0.02, 0.08),
            p95=0.08 * rng.lognormal(0, 0.15), in_flight=3 * rng.lognormal(0, 0.3))))
    return np.array(rows)


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(7)
    observed = _observed_normal(rng)
    parts = split(Dataset(normal=observed, floods=np.empty((0, len(FEATURE_NAMES))), start=0, end=600, step=2),
                  seed=7)
    model = DDoSModel.train(parts.train, calibration_rows=parts.calibration,
                            calibration_attacks=parts.calibration_attacks, seed=7)
    return model, parts, observed


def test_a_legitimate_surge_moves_volume_and_clients_together_and_nothing_else():
    row = feature_row(_signals(requests=50, clients=125, auth=0.5))
    assert row[F["volume_ratio"]] == pytest.approx(np.log2(2.5), abs=0.01)
    assert row[F["clients_ratio"]] == pytest.approx(np.log2(2.5), abs=0.02)
    assert row[F["requests_per_client_ratio"]] == pytest.approx(0, abs=0.02)
    assert row[F["auth_failure_share"]] == pytest.approx(0.5 / 51)
    assert row[F["rate_limited_share"]] == 0


def test_a_few_bots_raise_requests_per_client_failed_auth_and_rate_limiting():
    row = feature_row(_signals(requests=200, clients=60, auth=120, limited=40, top=0.3))
    assert row[F["requests_per_client_ratio"]] > 2.5
    assert row[F["auth_failure_share"]] == pytest.approx(120 / 201)
    assert row[F["rate_limited_share"]] == pytest.approx(40 / 201)


def test_less_traffic_is_not_evidence_of_an_attack():
    row = feature_row(_signals(requests=5, clients=10, p95=0.01, in_flight=0))
    for name in ("volume_ratio", "clients_ratio", "latency_ratio", "in_flight_ratio"):
        assert row[F[name]] == 0.0


def test_no_traffic_or_a_missing_input_gives_no_row():
    assert feature_row(_signals(requests=0.0)) is None
    assert feature_row({**_signals(), "clients": float("nan")}) is None


def test_every_expression_reads_the_gateway_and_baselines_lag_behind():
    queries = exprs(Windows(signal_s=10, baseline_s=180, lag_s=20, resolution_s=4))
    assert set(queries) >= {"requests", "clients", "requests_baseline", "clients_baseline"}
    assert c.GATEWAY_ACTIVE_CLIENTS.name in queries["clients"]
    assert "offset 20s" in queries["requests_baseline"] and "[180s:4s]" in queries["requests_baseline"]


def test_demand_augmentation_keeps_shares_and_growth_features_non_negative():
    rng = np.random.default_rng(1)
    rows = _observed_normal(rng, 50)
    grown = demand_changes(rows, rng)
    assert len(grown) == 8 * len(rows)
    assert (grown[:, F["volume_ratio"]] >= 0).all() and (grown[:, F["clients_ratio"]] >= 0).all()
    assert grown[:, F["volume_ratio"]].max() > 1.2        # up to 3.5x more demand
    np.testing.assert_allclose(np.sort(grown[:, F["auth_failure_share"]]),
                               np.sort(np.repeat(rows[:, F["auth_failure_share"]], 8)))


def test_the_model_catches_floods_and_keeps_normal_and_surges_quiet(trained):
    model, parts, observed = trained
    rng = np.random.default_rng(99)
    figures = validation_figures(model, parts.validation_normal, synthetic_attacks(observed, rng, strength=ANY))
    assert figures["recall"] >= 0.9, figures
    assert figures["false_positive_rate"] <= 0.03, figures
    surge = feature_row(_signals(requests=50, clients=118, auth=0.6, in_flight=6))
    assert model.scores(surge[None, :])[0] < model.threshold
    assert 0.5 <= model.threshold <= 0.9


def test_mild_floods_score_above_the_threshold_more_often_than_not(trained):
    model, _, observed = trained
    mild = synthetic_attacks(observed, np.random.default_rng(3), strength=MILD)
    assert np.mean(model.predict(mild)) >= 0.8


def test_the_verdict_explains_itself_with_the_feature_that_drives_it(trained):
    model, _, _ = trained
    row = feature_row(_signals(requests=30, clients=70, auth=15))   # half the requests fail to authenticate
    verdict = model.verdict(row)
    assert verdict.attack and 0 <= verdict.confidence <= 1
    assert max(verdict.contributions, key=verdict.contributions.get) == "auth_failure_share"
    assert set(verdict.model_scores) == {"isolation_forest", "one_class_svm"}
    quiet = model.verdict(feature_row(_signals()))
    assert not quiet.attack and quiet.score < verdict.score


@pytest.fixture(scope="module")
def fresh():
    """A fast lab's model: trained on its first minute, a few dozen quiet rows without one failed login."""
    rng = np.random.default_rng(11)
    quiet = np.array([feature_row(_signals(requests=8 * rng.normal(1, 0.05), clients=40 * rng.normal(1, 0.05),
                                           auth=0.0, top=0.013 * rng.normal(1, 0.05), p95=0.05 * rng.lognormal(0, 0.1),
                                           in_flight=1.0, base_requests=8, base_clients=40, base_p95=0.05,
                                           base_in_flight=1.0)) for _ in range(25)])
    parts = split(Dataset(quiet, np.empty((0, len(FEATURE_NAMES))), 0, 50, 2), seed=11, min_rows=20)
    model = DDoSModel.train(parts.train, calibration_rows=parts.calibration,
                            calibration_attacks=parts.calibration_attacks, seed=11)
    return model, quiet


def test_a_fresh_labs_model_stays_quiet_on_a_surge_it_never_saw_and_still_catches_mild_floods(fresh):
    """A 2.5x surge on two cores brings an occasional failed login, a busier top client (the
    gateway slows, so fewer requests share the window) and slower answers: ordinary traffic."""
    model, quiet = fresh
    surge = np.array([feature_row(_signals(requests=requests, clients=40 * growth, auth=auth, top=top,
                                           p95=0.05 * slower, in_flight=1.0 * growth, base_requests=8,
                                           base_clients=40, base_p95=0.05, base_in_flight=1.0))
                      for requests, growth, auth, top, slower in ((4, 2.0, 0.1, 0.05, 2.0), (12, 2.5, 0.1, 0.03, 1.5),
                                                                   (20, 2.5, 0.2, 0.02, 1.8), (6, 1.5, 0.0, 0.047, 1.2))])
    assert not model.predict(surge).any(), model.scores(surge)
    mild = synthetic_attacks(quiet, np.random.default_rng(3), strength=MILD)
    assert np.mean(model.predict(mild)) >= 0.8


@pytest.mark.parametrize("which", ["trained", "fresh"])
def test_a_failing_or_slow_backend_is_an_incident_but_not_an_attack(which, request):
    """Every payment failing, or the accounts service answering five times slower, changes the
    gateway's 5xx share, latency and requests in flight, and one busy customer may dominate,
    but no crowd arrives: no DDoS verdict (it would inhibit the very SLO page that must go out)."""
    model = request.getfixturevalue(which)[0]
    outage = [_signals(errors=6.0), _signals(errors=20.0), _signals(p95=0.4, in_flight=12.0),
              _signals(errors=10.0, p95=0.5, in_flight=15.0),
              _signals(errors=9.0, top=0.45)]      # one customer retrying failed payments
    if which == "fresh":
        outage = [{**o, "requests_baseline": 20.0, "clients_baseline": 50.0} for o in outage]
    rows = np.array([feature_row(signals) for signals in outage])
    assert not model.predict(rows).any(), model.scores(rows)
    flood = feature_row(_signals(requests=60, clients=400, auth=25, errors=10.0, p95=0.5, in_flight=15.0))
    assert model.predict(flood[None, :])[0]


@pytest.mark.parametrize("which", ["trained", "fresh"])
def test_at_unchanged_volume_nothing_is_an_attack_however_unusual(which, request):
    """Rows seen live on a fast-profile lab that scored 0.57-0.66 against a 0.57 threshold (a
    slow accounts service; the lab's first minutes), then the extremes of a backend incident:
    with no more requests than the baseline, the verdict stays normal whatever the score."""
    model = request.getfixturevalue(which)[0]
    live_and_extreme = {
        # volume, clients, per client, 401/403, 429, 5xx, top client, p95, in flight
        "accounts 1.5 s slower": [0.0, 0.0, 0.18, 0.0, 0.0, 0.0, 0.05, 1.31, 0.43],
        "lab warming up": [0.0, 1.27, 0.0, 0.05, 0.0, 0.0, 0.02, 0.0, 0.0],
        "everything fails slowly": [0.0, 0.0, 0.3, 0.3, 0.0, 1.0, 0.6, 4.0, 4.0],
        "just under the flood line": [0.3, 0.0, 0.3, 0.5, 0.3, 1.0, 0.6, 4.0, 4.0],
    }
    rows = np.array(list(live_and_extreme.values()))
    assert model.scores(rows[2:]).min() >= model.threshold     # odd enough to have been a verdict
    assert not model.predict(rows).any()
    assert not any(model.verdict(row).attack for row in rows)
    flood = rows[3].copy()
    flood[F["volume_ratio"]] = np.log2(1.3)                     # the mildest flood it must catch
    assert model.predict(flood[None, :])[0] and model.verdict(flood).attack



@pytest.mark.parametrize("which", ["trained", "fresh"])
def test_load_alone_is_no_attack_however_far_beyond_what_the_model_saw(which, request):
    """A surge past anything in training that saturates the gateway: 10x the requests from 10x
    the clients, p95 x32, 64x the requests in flight, 60 % of them failing. The score is above the
    threshold, but the clients behave as customers do: no verdict. The same load with failed
    authentication or rate limiting on top is one."""
    model = request.getfixturevalue(which)[0]
    # volume, clients, per client, 401/403, 429, 5xx, top client, p95, in flight
    load = np.array([np.log2(10), np.log2(10), 0.0, 0.01, 0.0, 0.6, 0.02, 5.0, 6.0])
    assert model.scores(load[None, :])[0] >= model.threshold, "odd enough to have been a verdict"
    verdict = model.verdict(load)
    assert not verdict.attack and verdict.hostile < HOSTILE_LEVEL <= model.threshold
    assert verdict.confidence >= 0.5, "sure it is normal: the clients behave as customers do"
    assert not model.predict(load[None, :])[0]
    for name, value in (("auth_failure_share", 0.3), ("rate_limited_share", 0.2)):
        hostile = load.copy()
        hostile[F[name]] = value
        assert model.verdict(hostile).attack and model.predict(hostile[None, :])[0], name



def test_a_share_normal_traffic_never_shows_is_measured_in_its_own_unit(trained):
    """No customer is ever rate limited, so the share never varied in training. scikit-learn
    scales such a feature by 1, which hid a flood refused 20 % of the time; its floor is one
    percentage point."""
    model, _, _ = trained
    assert model.scaler.scale_[F["rate_limited_share"]] == pytest.approx(0.01)
    refused = model.normal_median.copy()
    refused[F["rate_limited_share"]] = 0.2
    assert model.verdict(refused).hostile >= 0.9

def test_requests_per_client_count_the_requests_of_the_minute_the_clients_were_counted_in():
    """The first seconds of a 3x surge in the fast profile: the 10-second rate has tripled, while
    the last minute's requests and distinct clients have each grown by a third (customers, not
    bots). Per client over the 10-second rate it looked like 2.3x as many requests each."""
    row = feature_row({**_signals(requests=60, clients=66.7),
                       "client_window_requests": 26.7, "client_window_requests_baseline": 20.0})
    assert row[F["volume_ratio"]] == pytest.approx(np.log2(3), abs=0.01)
    assert row[F["requests_per_client_ratio"]] == pytest.approx(0, abs=0.02)
    fast = exprs(Windows(signal_s=10, baseline_s=180, lag_s=20, resolution_s=4))
    assert "[60s]" in fast["client_window_requests"] and "offset 20s" in fast["client_window_requests_baseline"]
    production = exprs(Windows(signal_s=60, baseline_s=3600, lag_s=300, resolution_s=60))
    assert "client_window_requests" not in production, "the rate window is the client window: no second query"

def test_too_few_normal_rows_is_a_clear_error():
    rows = _observed_normal(np.random.default_rng(0), 10)
    with pytest.raises(NotEnoughData, match="only 10 usable normal rows"):
        split(Dataset(rows, np.empty((0, len(FEATURE_NAMES))), 0, 20, 2))


def test_prior_rows_are_normal_looking(trained):
    model, _, observed = trained
    rows = prior(observed, np.random.default_rng(5), count=200)
    assert np.mean(model.predict(rows)) <= 0.05


def test_a_saved_model_loads_with_its_metadata(tmp_path, trained):
    model, _, observed = trained
    model.metadata.update({"trained_at": 1.0, "source": "test"})
    store.save(model, tmp_path)
    loaded = store.load(tmp_path)
    np.testing.assert_allclose(loaded.scores(observed[:20]), model.scores(observed[:20]))
    metadata = json.loads((tmp_path / store.METADATA_FILE).read_text())
    assert metadata["features"] == list(FEATURE_NAMES)
    assert {"scikit-learn", "numpy", "python"} <= set(metadata["libraries"])
    assert store.load(tmp_path / "nothing-here") is None


def test_a_corrupt_model_file_says_how_to_fix_it(tmp_path):
    (tmp_path / store.MODEL_FILE).write_bytes(b"not a model")
    with pytest.raises(store.ModelUnusable, match="obslab ml train ddos"):
        store.load(tmp_path)


def test_without_prometheus_the_detector_withdraws_its_verdict_and_says_stale(tmp_path, trained):
    from obslab.ml.ddos.service import create_app

    model, _, _ = trained
    store.save(model, tmp_path)
    app = create_app(prometheus=PrometheusClient("http://127.0.0.1:9", timeout=0.5), profile=FAST,
                     directory=tmp_path, start=False)
    detector = app.extensions["ddos-detector"]
    assert detector.evaluate() is None
    client = app.test_client()
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'ml_input_stale{detector="ddos-detector"} 1.0' in metrics
    assert "ddos_detection_score " not in metrics and "ddos_binary_prediction " not in metrics
    assert "ddos_decision_threshold" in metrics          # the model is there, only the inputs are not
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503 and "prometheus" in ready.get_json()["checks"]
    status = client.get("/api/v1/status").get_json()
    assert status["stale"] and "unreachable" in status["reason"]


def test_a_business_day_ramping_to_2_5x_stays_quiet(trained):
    """A weekday as obslab.sim.seasonality shapes the lab's load (night 1x, business hours 2.5x),
    with customers' client counts following demand, through the production feature windows
    (median of the past hour, 5 minutes ago)."""
    from obslab.sim import seasonality

    model, _, _ = trained
    rng = np.random.default_rng(11)
    minutes = 1795392000 + np.arange(0, 86400, 60)      # a Monday, UTC
    demand = seasonality.multiplier(minutes)
    assert demand.max() / demand.min() >= 2.4
    requests = 20 * demand * rng.normal(1, 0.04, len(minutes))
    clients = 50 * demand ** 0.95 * rng.normal(1, 0.04, len(minutes))
    p95 = 0.08 * rng.lognormal(0, 0.1, len(minutes))
    in_flight = 3 * demand * rng.lognormal(0, 0.2, len(minutes))

    def baseline(series: np.ndarray) -> np.ndarray:
        return np.array([np.median(series[max(0, i - 65):max(1, i - 5)]) for i in range(len(series))])

    rows = feature_matrix({
        "requests": requests, "clients": clients, "auth_failures": requests * rng.uniform(0, 0.03, len(minutes)),
        "rate_limited": np.zeros(len(minutes)), "server_errors": np.zeros(len(minutes)),
        "top_client_share": rng.uniform(0.02, 0.08, len(minutes)), "latency_p95": p95, "in_flight": in_flight,
        "requests_baseline": baseline(requests), "clients_baseline": baseline(clients),
        "latency_p95_baseline": baseline(p95), "in_flight_baseline": baseline(in_flight),
    })[10:]
    attack = model.predict(rows)
    assert attack.mean() <= 0.02, f"{attack.sum()} of {len(rows)} minutes judged an attack"
    assert not (attack[1:] & attack[:-1]).any(), "two attack verdicts in a row would hold the alert's for: 1m"


def test_generated_history_holds_every_gateway_series_the_features_read():
    """`obslab history` feeds training too: the gauges and counters the feature PromQL reads
    exist in the generated gateway history, with customer-like values."""
    from obslab.sim.banking import BankingModel, Target

    targets = {name: Target(name, "127.0.0.1:1", "banking") for name in c.BANKING_SERVICES}
    timestamps = 1795392000 + np.arange(0, 6 * 3600, 60)
    series = {s.name: s for s in BankingModel(1, 60, targets).series(timestamps)
              if dict(s.labels).get("job") == c.GATEWAY}
    queries = " ".join(exprs(Windows(signal_s=60, baseline_s=3600, lag_s=300, resolution_s=60)).values())
    for name in (c.GATEWAY_ACTIVE_CLIENTS.name, c.GATEWAY_TOP_CLIENT_SHARE.name, c.HTTP_SERVER_IN_FLIGHT.name,
                 c.GATEWAY_RATE_LIMITED.name):
        assert name in queries and name in series, name
    clients = series[c.GATEWAY_ACTIVE_CLIENTS.name].values
    assert 20 < clients.min() and clients.max() <= 300
    assert 0 < series[c.GATEWAY_TOP_CLIENT_SHARE.name].values.max() < 0.5
