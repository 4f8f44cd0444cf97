"""NAB scoring by hand-checkable cases, the corpus checks, the results layout and `bench nab`'s JSON.

Scoring cases use one file of 1,000 rows: its probationary period is rows 0-149 (15 %) and its
window rows 500-599 (width 100), so a detection's weight can be worked out on paper from
``scaled_sigmoid(x) = -tanh(2.5 x)``.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest

from obslab import conventions as c
from obslab.bench import nab as bench_nab
from obslab.ml.nab import scoring
from obslab.ml.nab.corpus import NabDataError, load_corpus, read_data_file
from obslab.ml.nab.lab_incidents import WARMUP_ROWS, build_lab_corpus
from obslab.ml.nab.runner import REPEAT_NUDGE_SECONDS, anomaly_scores, run_detectors
from obslab.ml.nab.scoring import (MAX_TP, PROFILES, LabelledSeries, file_scores, normalise, null_score,
                                   optimize_threshold, perfect_detections, perfect_score, probation_length,
                                   scaled_sigmoid, score_detector, scores_by_threshold, sweep_table)
from obslab.ml.protocol import Bands, deviation_score

STANDARD, LOW_FP, LOW_FN = PROFILES
ROWS, WINDOW = 1000, (500, 599)


def one_file(*windows: tuple[int, int], rows: int = ROWS) -> scoring.SweepTable:
    return sweep_table([LabelledSeries("cat/file.csv", rows, tuple(windows or (WINDOW,)))])


def detections(*rows: int, length: int = ROWS) -> np.ndarray:
    scores = np.zeros(length)
    scores[list(rows)] = 1.0
    return scores


def raw(table, scores, profile=STANDARD, threshold=1.0) -> float:
    return sum(f.score for f in file_scores(table, scores, profile, threshold))


# --- the scoring rules -----------------------------------------------------------------------


def test_the_scaled_sigmoid_has_the_values_in_nabs_docstring():
    assert scaled_sigmoid(-1.0) == pytest.approx(math.tanh(2.5)) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.01) == -1.0


def test_the_probationary_period_is_15_percent_of_a_file_but_at_most_750_rows():
    assert probation_length(1000) == 150
    assert probation_length(4999) == 749
    assert probation_length(22_695) == 750
    assert probation_length(7) == 1


def test_a_detection_on_a_windows_first_row_earns_the_whole_tp_weight():
    table = one_file()
    assert raw(table, detections(500)) == pytest.approx(1.0)
    # The last row earns almost nothing: position -1/width.
    assert raw(table, detections(599)) == pytest.approx(math.tanh(2.5 / 100) / math.tanh(2.5))


def test_only_the_earliest_detection_in_a_window_counts():
    table = one_file()
    earliest = scaled_sigmoid(-(599 - 510 + 1) / 100) / MAX_TP
    (alone,) = file_scores(table, detections(510), STANDARD, 1.0)
    (many,) = file_scores(table, detections(510, 520, 590), STANDARD, 1.0)
    assert alone.score == many.score == pytest.approx(earliest)
    assert (many.tp, many.fp, many.fn) == (3, 0, 97)


def test_a_detection_in_the_probationary_period_is_ignored():
    table = one_file()
    missed = -STANDARD.fn_weight
    assert raw(table, detections(100)) == missed
    (counts,) = file_scores(table, detections(100), STANDARD, 1.0)
    assert counts.total == ROWS - 150 and counts.fp == 0


def test_a_window_inside_the_probationary_period_is_neither_detected_nor_missed():
    table = one_file((100, 120), WINDOW)
    assert raw(table, np.zeros(ROWS)) == -1.0
    assert raw(table, detections(100, 500)) == pytest.approx(1.0)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_a_false_positive_far_from_any_window_costs_the_whole_fp_weight(profile):
    table = one_file()
    missed = -profile.fn_weight
    assert raw(table, detections(200), profile) == pytest.approx(missed - profile.fp_weight)     # before it
    assert raw(table, detections(999), profile) == pytest.approx(missed - profile.fp_weight)     # 4 widths after
    # Right after the window it costs little: 1/99 of a width past its right edge.
    assert raw(table, detections(600), profile) == pytest.approx(missed - profile.fp_weight * math.tanh(2.5 / 99))


def test_the_optimiser_picks_the_threshold_with_the_highest_score_and_the_higher_of_equal_ones():
    table = one_file()
    scores = np.full(ROWS, 0.1)
    scores[300], scores[500], scores[550] = 0.95, 0.9, 0.8     # an FP, the window's start, a later hit
    by_threshold = scores_by_threshold(table, scores, STANDARD)
    assert by_threshold.thresholds.tolist() == [1.1, 0.95, 0.9, 0.8, 0.1]
    brute = [raw(table, scores, STANDARD, t) for t in by_threshold.thresholds]
    assert by_threshold.scores == pytest.approx(brute)
    assert brute[1:3] == pytest.approx([-1.11, 0.89])
    # 0.9 and 0.8 score the same (0.8 only adds a later hit in the window): NAB keeps 0.9.
    assert optimize_threshold(table, scores, STANDARD) == (0.9, pytest.approx(0.89))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_the_perfect_detector_scores_100_and_the_null_one_0_in_every_profile(profile):
    series = [LabelledSeries("a/one.csv", 1000, ((400, 450), (700, 799))),
              LabelledSeries("a/two.csv", 600, ((300, 359),)), LabelledSeries("b/none.csv", 500, ())]
    table = sweep_table(series)
    assert null_score(table, profile) == -3 * profile.fn_weight
    assert perfect_score(table, profile) == 3 * profile.tp_weight
    perfect = score_detector(table, perfect_detections(table), [profile])[profile.name]
    assert perfect.normalised == pytest.approx(100.0)
    silent = score_detector(table, np.zeros(2100), [profile])[profile.name]
    assert silent.threshold == 1.1 and silent.normalised == 0.0


def test_normalisation_maps_the_null_score_to_0_and_the_perfect_score_to_100():
    assert normalise(-83.0, -83.0, 83.0) == 0.0
    assert normalise(83.0, -83.0, 83.0) == 100.0
    assert normalise(0.0, -166.0, 83.0) == pytest.approx(100 * 166 / 249)
    with pytest.raises(ValueError, match="no window"):
        normalise(-1.0, 0.0, 0.0)


def test_the_corpus_score_is_the_sum_of_nabs_per_file_scores_at_the_chosen_threshold():
    series = [LabelledSeries("a/one.csv", 800, ((300, 349),)), LabelledSeries("a/two.csv", 900, ((600, 699),))]
    table = sweep_table(series)
    scores = np.random.default_rng(4).random(1700).round(2)
    for profile in PROFILES:
        threshold, best = optimize_threshold(table, scores, profile)
        assert raw(table, scores, profile, threshold) == pytest.approx(best)
        others = [raw(table, scores, profile, t) for t in np.unique(scores)]
        assert best >= max(others) - 1e-9


# --- the corpus on disk ----------------------------------------------------------------------


def _write_csv(path, rows: int, *, spike: int | None = None, start="2015-01-01 00:00:00") -> list[str]:
    stamps = pd.date_range(start, periods=rows, freq="5min").strftime("%Y-%m-%d %H:%M:%S").tolist()
    values = 10 + np.sin(np.arange(rows) / 12.0)
    if spike is not None:
        values[spike:spike + 5] += 25
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"timestamp": stamps, "value": values.round(4)}).to_csv(path, index=False)
    return stamps


@pytest.fixture
def nab_root(tmp_path):
    """Two short files in two categories, and a label file that also names a held-out file."""
    root = tmp_path / "nab"
    stamps = _write_csv(root / "data" / "artificialWithAnomaly" / "spike.csv", 400, spike=300)
    _write_csv(root / "data" / "artificialNoAnomaly" / "flat.csv", 300)
    windows = {"artificialNoAnomaly/flat.csv": [],
               "artificialWithAnomaly/spike.csv": [[f"{stamps[290]}.000000", f"{stamps[319]}.000000"]],
               "realKnownCause/held_out.csv": [["2015-01-01 01:00:00.000000", "2015-01-01 02:00:00.000000"]]}
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    return root


def test_a_corpus_maps_window_timestamps_to_rows_and_lists_the_labelled_files_it_lacks(nab_root):
    corpus = load_corpus(nab_root)
    assert [f.path for f in corpus.files] == ["artificialNoAnomaly/flat.csv", "artificialWithAnomaly/spike.csv"]
    assert corpus.files[1].windows == ((290, 319),) and corpus.files[0].windows == ()
    assert corpus.missing == ("realKnownCause/held_out.csv",) and not corpus.complete
    assert corpus.files[1].labels().sum() == 30


@pytest.mark.parametrize("breakage, message", [
    (lambda root: (root / "labels" / "combined_windows.json").unlink(), "has no labels/combined_windows.json"),
    (lambda root: (root / "data").rename(root / "elsewhere"), "has no data/ folder"),
    (lambda root: _write_csv(root / "data" / "realTweets" / "new.csv", 50),
     "data/realTweets/new.csv is not in labels/combined_windows.json"),
    (lambda root: (root / "data" / "artificialNoAnomaly" / "flat.csv").write_text("time,v\n1,2\n"),
     "must start with the columns timestamp,value"),
    (lambda root: (root / "data" / "artificialNoAnomaly" / "flat.csv").write_text(
        "timestamp,value\n2015-01-01 00:00:00,1\n2015-01-01 00:05:00,lots\n"), "line 3: value 'lots' is not a number"),
    (lambda root: (root / "labels" / "combined_windows.json").write_text(json.dumps({
        "artificialNoAnomaly/flat.csv": [],
        "artificialWithAnomaly/spike.csv": [["2015-01-01 00:01:00", "2015-01-01 01:00:00"]]})),
     "is not a row of data/artificialWithAnomaly/spike.csv"),
])
def test_a_broken_nab_root_is_refused_with_a_message_that_names_what_to_fix(nab_root, breakage, message):
    breakage(nab_root)
    with pytest.raises(NabDataError, match=message.replace("(", r"\(")):
        load_corpus(nab_root)


def test_a_detector_sees_repeated_timestamps_nudged_while_the_results_keep_the_files_own(tmp_path):
    path = tmp_path / "data" / "realAWSCloudwatch" / "repeats.csv"
    path.parent.mkdir(parents=True)
    path.write_text("timestamp,value\n2014-03-09 02:55:00,1\n2014-03-09 03:00:00,2\n"
                    "2014-03-09 03:00:00,3\n2014-03-09 03:05:00,4\n")
    data = read_data_file(path, "realAWSCloudwatch/repeats.csv")
    seen = []

    class Strict:
        name = "strict"

        def causal(self, values, timestamps):
            seen.append(timestamps)
            return Bands(values, values, values, np.zeros_like(values))

    assert anomaly_scores(Strict(), data).tolist() == [0.0] * 4
    assert np.all(np.diff(seen[0]) > 0) and seen[0][2] - seen[0][1] == pytest.approx(REPEAT_NUDGE_SECONDS, abs=1e-6)
    assert data.timestamps[1] == data.timestamps[2]


def test_a_clock_that_steps_back_is_scored_in_file_order_never_refused(tmp_path):
    """A daylight-saving change in a real export: 01:00-01:55 comes twice. The detector sees the
    second hour shifted forward with its spacing kept; windows and scores keep the file's rows."""
    path = tmp_path / "data" / "realKnownCause" / "dst.csv"
    path.parent.mkdir(parents=True)
    times = [f"2015-10-25 00:{m:02d}:00" for m in range(0, 60, 5)]
    times += [f"2015-10-25 01:{m:02d}:00" for m in range(0, 60, 5)] * 2
    times += [f"2015-10-25 02:{m:02d}:00" for m in range(0, 60, 5)]
    path.write_text("timestamp,value\n" + "".join(f"{t},{i}\n" for i, t in enumerate(times)))
    # NAB enters a window at the first row with its start and leaves at the first row with its end.
    data = read_data_file(path, "realKnownCause/dst.csv", [("2015-10-25 01:30:00", "2015-10-25 02:10:00")])
    assert len(data) == 48 and data.windows == ((18, 38),)
    seen = []

    class Strict:
        name = "strict"

        def causal(self, values, timestamps):
            seen.append(timestamps)
            return Bands(values, values, values, np.linspace(0, 1, values.shape[1])[None, :])

    scores = anomaly_scores(Strict(), data)
    assert scores.tolist() == pytest.approx(np.linspace(0, 1, 48).tolist())
    assert np.all(np.diff(seen[0]) == pytest.approx(300.0)), "one usual interval between every two rows"


# --- bench nab end to end --------------------------------------------------------------------


class RollingZ:
    """Scores each point against the mean +- 3 sd of the 50 points before it."""

    name = "rollingZ"

    def causal(self, values, timestamps):
        previous = pd.DataFrame(values.T).shift(1).rolling(50, min_periods=10)
        mean, sd = previous.mean().to_numpy().T, previous.std().to_numpy().T
        lower, upper = mean - 3 * sd, mean + 3 * sd
        return Bands(mean, lower, upper, deviation_score(values, mean, lower, upper))


class LastValue:
    """Expects the previous value, with a band of one unit."""

    name = "lastValue"

    def causal(self, values, timestamps):
        expected = np.concatenate([np.full((values.shape[0], 1), np.nan), values[:, :-1]], axis=1)
        lower, upper = expected - 1, expected + 1
        return Bands(expected, lower, upper, deviation_score(values, expected, lower, upper))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    bench_nab.add_arguments(parser)
    code = bench_nab.run(parser.parse_args(list(argv)), detectors=[RollingZ(), LastValue()])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_bench_nab_writes_nabs_results_layout_and_prints_one_json_object(nab_root, tmp_path, capsys):
    out = tmp_path / "results"
    code, stdout, stderr = _run(capsys, "--data", str(nab_root), "--out", str(out), "--json", "--lab-days", "1")
    assert code == 0
    document = json.loads(stdout)
    assert document["files"] == 2
    assert set(document["detectors"]) == {"rollingZ", "lastValue"}
    for by_profile in [*document["detectors"].values(), *document["lab"].values()]:
        assert set(by_profile) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
        assert all(isinstance(v, float) for v in by_profile.values())
    assert set(document["lab"]) == set(document["detectors"])
    assert document["lab_source"]["seed"] == 1 and document["lab_source"]["days"] == 1
    assert document["corpus"]["comparable_with_published"] is False
    assert "rollingZ: 2/2 files" in stderr

    for detector in ("rollingZ", "lastValue"):
        path = out / detector / "artificialWithAnomaly" / f"{detector}_spike.csv"
        frame = pd.read_csv(path)
        assert list(frame.columns) == ["timestamp", "value", "anomaly_score", "label"]
        source = pd.read_csv(nab_root / "data" / "artificialWithAnomaly" / "spike.csv")
        assert frame["timestamp"].tolist() == source["timestamp"].tolist()
        assert frame.index[frame["label"] == 1].tolist() == list(range(290, 320))
        assert frame["anomaly_score"].between(0, 1).all()
        assert (out / detector / "artificialNoAnomaly" / f"{detector}_flat.csv").is_file()
        totals = pd.read_csv(out / detector / f"{detector}_standard_scores.csv").iloc[-1]
        assert totals["Detector"] == "Totals"
        assert totals["Score"] == pytest.approx(document["raw_scores"][detector]["standard"], abs=1e-5)
    assert (out / bench_nab.PLOT_NAME).stat().st_size > 0 and document["plot"] == str(out / bench_nab.PLOT_NAME)


def test_bench_nab_prints_the_published_scoreboard_beside_a_caveat_when_it_scores_a_subset(nab_root, tmp_path, capsys):
    code, stdout, _ = _run(capsys, "--data", str(nab_root), "--out", str(tmp_path / "r"), "--lab-days", "0")
    assert code == 0
    assert "scored on 2 of 3 files: not comparable with the published table (absent: realKnownCause (1))" in stdout
    assert "Numenta HTM" in stdout and "70.5-69.7" in stdout and "Lab scores" not in stdout
    assert f"Plot: {tmp_path / 'r' / bench_nab.PLOT_NAME}" in stdout


def test_bench_nab_runs_only_the_detectors_asked_for_and_names_an_unknown_one(nab_root, tmp_path, capsys):
    code, stdout, _ = _run(capsys, "--data", str(nab_root), "--out", str(tmp_path / "r"), "--lab-days", "0",
                           "--json", "--detectors", "lastValue")
    assert code == 0 and set(json.loads(stdout)["detectors"]) == {"lastValue"}
    with pytest.raises(bench_nab.settings.ConfigError, match="unknown prophet; choose from rollingZ, lastValue"):
        _run(capsys, "--data", str(nab_root), "--detectors", "prophet")


def test_a_detector_name_nabs_scorer_would_misread_is_refused(nab_root):
    class Underscored(LastValue):
        name = "last_value"

    with pytest.raises(ValueError, match="must not contain '_'.*rename last_value in camelCase"):
        run_detectors(load_corpus(nab_root).files, [Underscored()], None, progress=lambda _: None)


def test_bench_nab_refuses_a_lab_day_count_out_of_range(nab_root, capsys):
    with pytest.raises(bench_nab.settings.ConfigError, match="--lab-days must be between 0"):
        _run(capsys, "--data", str(nab_root), "--lab-days", "31")


# --- the lab's incidents ---------------------------------------------------------------------


def test_every_lab_incident_is_a_window_on_the_series_it_is_designed_to_affect_only():
    lab = build_lab_corpus(1, seed=3)
    by_name = {f.path.split("/")[1].removesuffix(".csv"): f for f in lab.files}
    assert len(lab.incidents) == 6 and sum(len(f.windows) for f in lab.files) == 7
    for data in lab.files:
        assert data.windows and all(first >= WARMUP_ROWS for first, _ in data.windows)
        assert len(data) == 1440 + WARMUP_ROWS
    surge = next(i for i in lab.incidents if i.spec.kind == c.FaultKind.VOLUME_SURGE)
    requests = by_name[f"iis_requests_per_second_{surge.spec.target}"]
    (first, last), = requests.windows
    assert requests.timestamps[first] == surge.start and requests.timestamps[last] == surge.end - lab.step
    inside = requests.values[first:last + 1].mean()
    assert inside > 2.5 * requests.values[first - 60:first].mean()        # three times the load
    assert len(by_name["gateway_transfer_seconds"].windows) == 2            # slow fraud, then fraud down
