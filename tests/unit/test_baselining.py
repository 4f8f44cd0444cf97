"""Baselining algorithms and their ensemble: the protocol's promises, detection, bench smoke."""

from __future__ import annotations

import doctest
import importlib
import warnings

import numpy as np
import pytest

from obslab.ml import baselining
from obslab.ml.baselining import (
    ALGORITHMS,
    Ensemble,
    HoltWinters,
    SeasonalMAD,
    ZScore,
    all_detectors,
    bench,
    by_name,
    median_band,
)
from obslab.ml.baselining import _common, holt_winters, novelty, quantile, seasonal, zscore
from obslab.ml.protocol import Bands, Baseline, BaselineAlgorithm, score_against

# ``baselining.ensemble`` is the factory function; the module of the same name is this one.
ensemble_module = importlib.import_module("obslab.ml.baselining.ensemble")

MIDNIGHT = 1704067200.0          # 2024-01-01T00:00:00Z, a Monday
DETECTORS = all_detectors()
NAMES = [d.name for d in DETECTORS]
each_detector = pytest.mark.parametrize("detector", DETECTORS, ids=NAMES)

# Two shapes of history: the baseliner's (15 s scrapes, a few hours) and NAB's (5-minute steps,
# days, so that the seasonal slots and the Holt-Winters season are in play).
LAYOUTS = {"15s-6h": (15.0, 1440), "5min-3days": (300.0, 3 * 288)}
each_layout = pytest.mark.parametrize("layout", list(LAYOUTS))


def timeline(step: float, n_points: int) -> np.ndarray:
    return MIDNIGHT + np.arange(n_points) * step


def gaussian(n_series: int, n_points: int, seed: int, mean: float = 100.0,
             sd: float = 5.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, size=(n_series, n_points))


def daily(timestamps: np.ndarray, quiet: float = 40.0, busy: float = 160.0) -> np.ndarray:
    """Quiet at 03:00 UTC, busy at 15:00 UTC, smooth in between."""
    hour = (timestamps % 86400.0) / 3600.0
    return quiet + (busy - quiet) * 0.5 * (1.0 - np.cos(2 * np.pi * (hour - 3.0) / 24.0))


def assert_sane(expected: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
    defined = np.isfinite(expected)
    np.testing.assert_array_equal(defined, np.isfinite(lower))
    np.testing.assert_array_equal(defined, np.isfinite(upper))
    assert np.all(lower[defined] <= expected[defined])
    assert np.all(expected[defined] <= upper[defined])


def at(bands: Bands, columns: slice) -> tuple[np.ndarray, ...]:
    return tuple(getattr(bands, f)[:, columns] for f in ("expected", "lower", "upper", "score"))


@each_detector
def test_every_detector_speaks_the_protocol(detector):
    assert isinstance(detector, BaselineAlgorithm)
    assert detector.name and detector.summary and "\n" not in detector.summary
    ts = timeline(15.0, 100)
    assert isinstance(detector.fit(gaussian(2, 100, 0), ts), Baseline)


@each_detector
@each_layout
def test_the_band_at_a_point_is_unchanged_by_anything_after_it(detector, layout):
    step, n_points = LAYOUTS[layout]
    ts = timeline(step, n_points)
    history = gaussian(3, n_points, 1) + daily(ts)
    history[1, 200:230] = np.nan
    cut = n_points - 150
    rewritten = history.copy()
    rewritten[:, cut + 1:] = gaussian(3, n_points - cut - 1, 2, mean=400.0, sd=40.0)
    original, changed = detector.causal(history, ts), detector.causal(rewritten, ts)
    for before, after in zip(at(original, slice(0, cut + 1)), at(changed, slice(0, cut + 1))):
        np.testing.assert_array_equal(before, after)
    # Not a vacuous check: what comes after the cut did change.
    later = slice(cut + 1, None)
    assert not all(np.array_equal(a, b, equal_nan=True)
                   for a, b in zip(at(original, later), at(changed, later)))


@each_detector
@each_layout
def test_fitting_at_a_refit_point_forecasts_the_streaming_band(detector, layout):
    step, n_points = LAYOUTS[layout]
    ts = timeline(step, n_points)
    history = gaussian(3, n_points, 3) + daily(ts)
    history[2, 100:140] = np.nan
    streaming = detector.causal(history, ts)
    for cut in (n_points - 200, n_points - 40):     # multiples of the 5-minute refresh
        expected, lower, upper = detector.fit(history[:, :cut], ts[:cut]).bands(ts[cut:cut + 1])
        np.testing.assert_allclose(expected[:, 0], streaming.expected[:, cut], rtol=1e-9)
        np.testing.assert_allclose(lower[:, 0], streaming.lower[:, cut], rtol=1e-9)
        np.testing.assert_allclose(upper[:, 0], streaming.upper[:, cut], rtol=1e-9)


@each_detector
def test_an_eight_sigma_spike_scores_above_half_while_clean_noise_rarely_does(detector):
    ts = timeline(15.0, 2000)
    noise = gaussian(20, 2000, 4)
    clean = detector.causal(noise, ts)
    defined = np.isfinite(clean.expected)
    assert defined[:, 200:].all()
    false_alarms = np.mean(clean.score[defined] > 0.5)
    assert false_alarms <= 0.03, f"{detector.name}: {false_alarms:.2%} of clean noise flagged"

    spiked = noise.copy()
    spiked[:, 1500] += 8 * 5.0
    scores = detector.causal(spiked, ts).score[:, 1500]
    assert np.all(scores > 0.5), f"{detector.name}: spike scores {np.round(scores, 2)}"


@each_detector
def test_bands_are_ordered_and_scores_bounded_on_a_realistic_mix(detector):
    values, ts = bench.synthetic_series(40, 1500, 15.0, seed=5)
    bands = detector.causal(values, ts)
    assert_sane(bands.expected, bands.lower, bands.upper)
    # A band's score stays below 1; levelNovelty's is a share of resolutions, 1 when all agree.
    top = 1.0 if detector.name == "levelNovelty" else np.nextafter(1.0, 0.0)
    assert np.all((bands.score >= 0) & (bands.score <= top))
    assert np.all(bands.score[np.isnan(values)] == 0)
    forecast = detector.fit(values, ts).bands(ts[-1] + 15.0 * np.arange(1, 41))
    assert_sane(*forecast)
    assert np.isfinite(forecast[0]).mean() > 0.9


@each_detector
def test_gaps_score_zero_and_the_band_resumes_after_them(detector):
    ts = timeline(15.0, 1200)
    values = gaussian(3, 1200, 6)
    values[0, 400:700] = np.nan          # a 75-minute scrape outage
    values[1, ::3] = np.nan              # every third scrape lost
    values[2, :] = np.nan                # a series that never answered
    bands = detector.causal(values, ts)
    assert np.all(bands.score[np.isnan(values)] == 0)
    assert np.isfinite(bands.expected[:2, -100:]).all()
    assert np.isnan(bands.expected[2]).all() and np.all(bands.score[2] == 0)
    expected, _, _ = detector.fit(values, ts).bands(ts[-1] + np.array([15.0, 30.0]))
    assert np.isfinite(expected[:2]).all() and np.isnan(expected[2]).all()


@each_detector
def test_a_constant_series_gets_a_zero_width_band_without_dividing_by_zero(detector):
    ts = timeline(15.0, 800)
    values = np.vstack([np.full(800, 7.0), np.full(800, 1e6 + 0.1), np.zeros(800)])
    values[:, -1] += 1.0                 # the last point leaves the constant
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bands = detector.causal(values, ts)
        forecast = detector.fit(values[:, :-1], ts[:-1]).bands(ts[-1:])
    defined = np.isfinite(bands.expected[:, :-1])
    assert defined[:, 100:].all()
    np.testing.assert_array_equal(bands.lower[:, :-1][defined], bands.upper[:, :-1][defined])
    np.testing.assert_array_equal(bands.expected[:, :-1][defined], values[:, :-1][defined])
    assert np.all(bands.score[:, :-1] == 0)
    assert np.all(bands.score[:, -1] > 0.99)
    np.testing.assert_array_equal(forecast[0][:, 0], values[:, 0])


@each_detector
def test_too_short_a_history_has_no_band_and_scores_nothing(detector):
    ts = timeline(15.0, 5)
    values = gaussian(2, 5, 7)
    bands = detector.causal(values, ts)
    assert np.isnan(bands.expected).all() and np.all(bands.score == 0)
    expected, lower, upper = detector.fit(values, ts).bands(ts[-1] + np.array([15.0]))
    assert np.isnan(expected).all() and np.isnan(lower).all() and np.isnan(upper).all()


@each_detector
def test_forecasts_have_one_column_per_future_timestamp(detector):
    ts = timeline(15.0, 600)
    baseline = detector.fit(gaussian(4, 600, 8), ts)
    for n in (1, 20):
        for array in baseline.bands(ts[-1] + 15.0 * np.arange(1, n + 1)):
            assert array.shape == (4, n)
    scored = score_against(baseline, gaussian(4, 20, 9), ts[-1] + 15.0 * np.arange(1, 21))
    assert scored.score.shape == (4, 20)


@each_detector
def test_infinite_values_are_treated_as_gaps(detector):
    ts = timeline(15.0, 600)
    values = gaussian(2, 600, 10)
    values[0, 300] = np.inf
    bands = detector.causal(values, ts)
    assert bands.score[0, 300] == 0
    assert np.isfinite(bands.expected[0, 301:]).all()
    assert np.isinf(values[0, 300])      # the caller's array is left alone


def test_the_seasonal_band_follows_the_hour_of_day():
    ts = timeline(300.0, 4 * 288)
    values = daily(ts) + gaussian(2, ts.size, 11, mean=0.0, sd=3.0)
    algorithm = SeasonalMAD()
    streaming = algorithm.causal(values, ts)
    day4_0330, day4_1530 = 3 * 288 + 42, 3 * 288 + 186
    assert np.all(streaming.expected[:, day4_1530] > streaming.expected[:, day4_0330] + 80)
    assert np.all(streaming.score[:, [day4_0330, day4_1530]] < 0.5)
    tomorrow = ts[-1] + 300.0 + np.array([3.5 * 3600, 15.5 * 3600])
    expected, lower, upper = algorithm.fit(values, ts).bands(tomorrow)
    assert np.all(expected[:, 1] > expected[:, 0] + 80)
    assert np.all(lower[:, 1] > upper[:, 0])      # the busy hour's band clears the quiet one's


def test_the_seasonal_band_uses_the_day_of_week_after_two_weeks():
    ts = timeline(300.0, 15 * 288)
    weekday = ((ts // 86400.0) + 3) % 7       # 0 = Monday (1970-01-01 was a Thursday)
    values = np.where(weekday >= 5, 20.0, 100.0) + gaussian(1, ts.size, 12, mean=0.0, sd=2.0)
    expected, _, _ = SeasonalMAD().fit(values, ts).bands(
        MIDNIGHT + np.array([19 * 86400.0, 16 * 86400.0]) + 12 * 3600)   # a Saturday, a Wednesday
    assert expected[0, 0] < 30 and expected[0, 1] > 90


def test_holt_winters_forecasts_the_daily_season_after_two_days():
    ts = timeline(300.0, 3 * 288)
    values = daily(ts) + gaussian(2, ts.size, 13, mean=0.0, sd=3.0)
    tomorrow = ts[-1] + 300.0 + np.array([3.5 * 3600, 15.5 * 3600])
    expected, _, _ = HoltWinters().fit(values, ts).bands(tomorrow)
    assert np.all(expected[:, 1] > expected[:, 0] + 60)
    one_day = timeline(300.0, 288)
    flat, _, _ = HoltWinters().fit(values[:, :288], one_day).bands(
        one_day[-1] + 300.0 + np.array([3.5 * 3600, 15.5 * 3600]))
    assert np.all(np.abs(flat[:, 1] - flat[:, 0]) < 20)   # no season yet: a damped level only


def test_holt_winters_adopts_a_level_shift_instead_of_flagging_it_forever():
    ts = timeline(15.0, 1000)
    values = np.vstack([np.where(np.arange(1000) < 500, 5.0, 9.0),        # constant to constant
                        gaussian(1, 1000, 14)[0] + np.where(np.arange(1000) < 500, 0, 60.0)])
    scores = HoltWinters().causal(values, ts).score
    assert np.all(scores[:, 500] > 0.5)
    assert np.mean(scores[:, 560:] > 0.5) < 0.03


def test_the_ensemble_band_is_the_median_and_ignores_one_wild_member():
    shape = (2, 3)
    sane = [(np.full(shape, e), np.full(shape, e - 10.0), np.full(shape, e + 10.0))
            for e in (100.0, 104.0, 98.0)]
    wild = (np.full(shape, 1e9), np.full(shape, -1e9), np.full(shape, 2e9))
    expected, lower, upper = median_band([*sane, wild])
    # Each of the three is the mean of its middle two: (100 + 104) / 2, (88 + 90) / 2, ...
    np.testing.assert_allclose(expected, 102.0)
    np.testing.assert_allclose(lower, 89.0)
    np.testing.assert_allclose(upper, 112.0)
    missing = (np.full(shape, np.nan),) * 3
    expected, _, _ = median_band([sane[0], missing, missing], min_members=2)
    assert np.isnan(expected).all()
    expected, _, _ = median_band([sane[0], sane[1], missing], min_members=2)
    np.testing.assert_allclose(expected, 102.0)


def test_the_ensemble_combines_results_already_computed_like_running_itself():
    ts = timeline(15.0, 900)
    values = gaussian(3, 900, 15)
    members = [a.causal(values, ts) for a in ALGORITHMS]
    combined = baselining.ensemble().combine(members, values)
    direct = baselining.ensemble().causal(values, ts)
    np.testing.assert_array_equal(combined.expected, direct.expected)
    np.testing.assert_array_equal(combined.score, direct.score)


def test_detectors_are_listed_in_a_stable_order_and_found_by_name():
    assert NAMES == ["zscore", "seasonalMad", "holtWinters", "quantile", "ensemble", "levelNovelty"]
    assert isinstance(by_name("zscore"), ZScore)
    assert isinstance(by_name("ensemble"), Ensemble)
    with pytest.raises(ValueError, match="zscore, seasonalMad, holtWinters, quantile, ensemble, levelNovelty"):
        by_name("prophet")


@pytest.mark.parametrize("call, message", [
    (lambda: ZScore().causal(np.ones(10), np.arange(10.0)), "2-D"),
    (lambda: ZScore().causal(np.ones((1, 10)), np.arange(9.0)), "one entry per column"),
    (lambda: ZScore().causal(np.ones((1, 3)), np.array([0.0, 2.0, 1.0])), "strictly increasing"),
    (lambda: ZScore(k=0), "k must be a positive number"),
    (lambda: SeasonalMAD(slot_s=7000), "slot_s must divide a day"),
    (lambda: Ensemble(()), "at least one algorithm"),
], ids=["1-D values", "timestamps length", "unsorted timestamps", "bad k", "bad slot",
        "empty ensemble"])
def test_malformed_input_is_refused_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_benchmark_reports_positive_figures_for_every_detector():
    figures = bench.measure(n_series=20, n_points=600)
    assert set(figures["algorithms"]) == set(NAMES)
    for name, entry in figures["algorithms"].items():
        assert entry["fit_s"] > 0 and entry["causal_s"] > 0, name
        assert 0 <= entry["flagged_share"] < 0.2, name
    assert figures["total_s"] > 0 and figures["refit_cycle_s"] > 0 and figures["input_mib"] > 0
    assert figures["peak_rss_growth_mib_getrusage"] >= 0


@pytest.mark.parametrize("module", [baselining, _common, zscore, seasonal, holt_winters, quantile, novelty,
                                    ensemble_module, bench], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.failed == 0


def test_detector_names_follow_nabs_convention_so_its_scorer_can_read_their_results():
    """NAB's scorer takes a detector's name from a results file's name up to the first '_'."""
    for name in NAMES:
        assert "_" not in name and name[0].islower(), name


def test_level_novelty_alarms_on_a_first_visit_then_rests_unless_something_bigger_comes():
    ts = timeline(300.0, 2000)
    values = np.sin(ts / 7200.0)[None, :].copy()      # a smooth daily-ish wave in [-1, 1]
    values[0, 1000] = 3.0                              # a spike to new ground: an alarm
    values[0, 1010] = 3.1                              # inside the rest, news at fine bins only: silenced
    values[0, 1020] = 9.0                              # inside the rest, news at every resolution
    values[0, 1500] = 3.0                              # seen before: familiar ground now
    detector = novelty.LevelNovelty()
    score = detector.causal(values, ts).score[0]
    learn = detector.learning(2000)
    assert learn == 300 and np.all(score[:learn] == 0), "nothing is news while it learns"
    assert score[1000] == 1.0 and score[1010] == 0.0 and score[1020] == 1.0
    assert score[1500] == 0.0
    quiet = np.delete(np.arange(learn, 2000), [1000 - learn, 1020 - learn])
    assert np.all(score[quiet] == 0.0), "a wave that repeats itself is never news"


def test_level_novelty_is_causal_for_a_fixed_learning_period():
    ts = timeline(60.0, 1200)
    values = gaussian(4, 1200, 11)
    detector = novelty.LevelNovelty(learn_points=200)
    whole = detector.causal(values, ts).score
    for cut in (400, 900):
        np.testing.assert_array_equal(detector.causal(values[:, :cut], ts[:cut]).score, whole[:, :cut])


def test_level_novelty_sees_a_missing_daily_peak_in_a_series_with_a_daily_rhythm():
    ts = timeline(300.0, 288 * 12)                         # twelve days of 5-minute points
    day = np.sin(2 * np.pi * ts / 86400.0)
    values = (day + np.random.default_rng(12).normal(0, 0.02, ts.shape[0]))[None, :]
    peak = slice(288 * 10 + 50, 288 * 10 + 95)             # day 11's peak hours stay flat ...
    values[0, peak] = 0.0                                  # ... at a level the series visits daily
    detector = novelty.LevelNovelty()
    score = detector.causal(values, ts).score[0]
    assert score[peak].max() >= 0.5, "the flat peak is news against the same time yesterday"
    ordinary = score[detector.learning(ts.shape[0]):288 * 10 + 50]
    # The change since yesterday is mostly noise: a rare new extreme of it alarms, seldom.
    assert np.sum(ordinary >= 0.5) <= 2, f"ordinary days alarmed {np.sum(ordinary >= 0.5)} times"
    plain = novelty.LevelNovelty(rhythm_correlation=2.0).causal(values, ts).score[0]
    assert plain[peak].max() < 0.5, "by level alone, a value inside the daily range is familiar"


def test_level_novelty_with_its_rhythm_channel_is_causal_whatever_the_later_timestamps():
    ts = timeline(300.0, 288 * 6)
    values = (np.sin(2 * np.pi * ts / 86400.0) + np.random.default_rng(13).normal(0, 0.02, ts.shape[0]))[None, :]
    detector = novelty.LevelNovelty(learn_points=500)
    whole = detector.causal(values, ts).score
    # Most points after the cut come five times as often: the step the whole series shows changes,
    # the learning period's does not.
    denser = np.concatenate([ts[:600], ts[599] + 60.0 * np.arange(1, ts.shape[0] - 599)])
    np.testing.assert_array_equal(detector.causal(values, denser).score[:, :600], whole[:, :600])
    assert detector._daily_change(values[0], 288, 500) is not None, "the rhythm channel runs here"
