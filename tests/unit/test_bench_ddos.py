"""`obslab bench ddos`: what it counts as a missed target, and its refusal of bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from obslab.bench import ddos
from obslab.lab.native import LabError


def sample(t: float, score: float, attack: bool) -> dict:
    return {"t": t, "score": score, "attack": attack, "features": {"volume_ratio": 1.2},
            "contributions": {"volume_ratio": 0.1, "clients_ratio": 0.05}}


def episode(kind: str, *samples: dict, factor: float | None = 2.0) -> ddos.Episode:
    ep = ddos.Episode("fresh", kind, factor if kind == "surge" else None, "bootstrap", 30, 200.0, 0.6)
    ep.samples.extend(samples)
    return ep


def bench_with(*episodes: ddos.Episode) -> ddos.SurgeBench:
    bench = ddos.SurgeBench(lab=None, detector_url="http://127.0.0.1:1", progress=lambda _: None)  # type: ignore[arg-type]
    bench.episodes.extend(episodes)
    return bench


def test_a_quiet_surge_and_a_flood_caught_in_time_meet_the_targets(capsys):
    bench = bench_with(episode("surge", sample(1, 0.3, False), sample(2, 0.45, False)),
                       episode("flood", sample(1, 0.4, False), sample(12, 0.93, True)))
    assert ddos.report(bench, (2.0,), as_json=True) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["false_attack_verdicts"] == 0 and figures["floods_missed"] == 0
    surge, flood = figures["episodes"]
    assert surge["peak_score"] == 0.45 and flood["detected_s"] == 12


@pytest.mark.parametrize("episodes", [
    [episode("surge", sample(1, 0.7, True))],                                  # a legitimate surge judged an attack
    [episode("flood", sample(1, 0.4, False), sample(61, 0.9, True))],          # a flood caught too late
    [episode("flood", sample(1, 0.4, False))],                                 # a flood never caught
], ids=["false-verdict", "late-flood", "missed-flood"])
def test_a_missed_target_fails_the_benchmark(episodes, capsys):
    assert ddos.report(bench_with(*episodes), (2.0,), as_json=False) == 1
    assert "(target 0)" in capsys.readouterr().out


def test_the_table_gives_the_peak_score_distribution_per_factor(capsys):
    bench = bench_with(episode("surge", sample(1, 0.2, False), factor=3.0),
                       episode("surge", sample(1, 0.4, False), factor=3.0))
    assert ddos.report(bench, (3.0,), as_json=False) == 0
    assert "x3: peak score over 2 surges: min 0.200, median 0.300, max 0.400" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["", "1", "2,x", "0.5", "11"])
def test_factors_outside_a_surge_are_refused(text):
    with pytest.raises(LabError, match="--factors"):
        ddos.parse_factors(text)


def test_the_command_refuses_bad_factors_with_one_line_before_starting_anything():
    result = subprocess.run([sys.executable, "-m", "obslab", "bench", "ddos", "--factors", "0.5"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "--factors must be above 1" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_port_offset_into_the_ephemeral_range_is_refused_before_any_process_starts():
    # It used to start a lab whose every component refused the offset, restarted in a loop.
    result = subprocess.run([sys.executable, "-m", "obslab", "bench", "ddos", "--port-offset", "24000"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "port offset must be between 0 and" in result.stderr and len(result.stderr.strip().splitlines()) == 1
