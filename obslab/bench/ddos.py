"""``obslab bench ddos``: the DDoS detector through legitimate surges and floods, over a lab's life.

A false attack verdict is the worst error the lab can make: ``DDoSAttackSuspected`` inhibits
the pages of the very services a surge strains. One run of a surge proves little (the features
are rates over a few seconds), so this benchmark starts a fresh fast-profile lab and, in
*rounds*, raises the customers' demand on the gateway by each ``--factors`` (a
``volume_surge``: more journeys from the simulated customers, nothing else changed) for
``--hold``, then floods the gateway (``ddos_flood``) and times the first attack verdict.

The rounds span the detector's life: the first runs on the model the lab trained for itself,
later ones on models the lab retrained every five minutes (fast profile), each surge recording
the model it met. A last *peak* round first doubles demand for long enough that the baselines
and a retraining take it in (a business day's busiest hour), then surges on top of it, where
the 2-core gateway saturates.

Printed: per round and factor, the peak score over the surge and the count of attack verdicts
(the target is none up to 3x), the threshold, and each flood's time to detection (the target is
60 s); ``--json`` gives every sample. The exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from obslab import conventions as c
from obslab.bench.api import _environment
from obslab.drills.lab import DrillError, Lab
from obslab.lab.native import LabError, NativeLab
from obslab.profiles import FAST

DEFAULT_FACTORS = (1.5, 2.0, 2.5, 3.0)
FLOOD_TARGET_S = 60.0
SAMPLE_INTERVAL_S = 1.0
PEAK_FACTOR = 2.0
# A feature's baseline is its median over the fast profile's baseline window, ending lag ago: after
# this long, a surge or flood is out of it (with less, the next surge met a raised baseline).
SETTLE_S = FAST.ddos_baseline_window_s + FAST.ddos_baseline_lag_s
# As the ML end-to-end test runs it: a lower base rate and more workers leave the lab's two
# cores room for a 3x surge (the generator's 8 default workers cap the lab near its base load).
LAB_LOAD = {"OBSLAB_LOAD_RATE": "0.8", "OBSLAB_LOAD_CONCURRENCY": "32"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--factors", default=",".join(str(f) for f in DEFAULT_FACTORS), metavar="F,...",
                        help="legitimate surge factors, each > 1 (default: 1.5,2,2.5,3)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of every surge and one flood, back to back (default: 2)")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds each surge lasts (default: 60)")
    parser.add_argument("--cooldown", type=float, default=SETTLE_S,
                        help=f"seconds of normal traffic after each surge or flood (default: {SETTLE_S}, long enough "
                             "that the next one meets a baseline of normal traffic only)")
    parser.add_argument("--no-peak", action="store_true", help="skip the round on top of a doubled demand")
    parser.add_argument("--flood-rps", type=int, default=150, help="flood requests per second (default: 150)")
    parser.add_argument("--port-offset", type=int, default=19000,
                        help="ports of the lab the benchmark starts = defaults + this (default: 19000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with every sample")


def parse_factors(text: str) -> tuple[float, ...]:
    try:
        factors = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise LabError(f"--factors takes numbers separated by commas, got {text!r}") from None
    if not factors or any(not 1 < f <= 10 for f in factors):
        raise LabError(f"--factors must be above 1 and at most 10, got {text!r}")
    return factors


@dataclass
class Episode:
    """One surge or flood: what the detector said every second while it lasted."""

    round: str
    kind: str                   # "surge" or "flood"
    factor: float | None        # surge factor over the demand of the round
    model_source: str | None
    model_age_s: float | None   # since the model met was trained
    lab_age_s: float
    threshold: float | None
    samples: list[dict] = field(default_factory=list)

    @property
    def peak(self) -> dict | None:
        return max(self.samples, key=lambda s: s["score"], default=None)

    @property
    def attacks(self) -> int:
        return sum(1 for s in self.samples if s["attack"])

    @property
    def detected_s(self) -> float | None:
        return next((s["t"] for s in self.samples if s["attack"]), None)

    def summary(self) -> dict:
        peak = self.peak
        top = sorted((peak or {}).get("contributions", {}).items(), key=lambda kv: -kv[1])[:3]
        return {"round": self.round, "kind": self.kind, "factor": self.factor, "model_source": self.model_source,
                "model_age_s": self.model_age_s, "lab_age_s": round(self.lab_age_s), "threshold": self.threshold,
                "samples": len(self.samples), "peak_score": peak["score"] if peak else None,
                "attack_verdicts": self.attacks, "detected_s": self.detected_s,
                "peak_volume_ratio": peak["features"].get("volume_ratio") if peak else None,
                "peak_hostile_score": max((s.get("hostile_score", 0.0) for s in self.samples), default=None),
                "peak_top_contributions": dict(top)}


class SurgeBench:
    def __init__(self, lab: Lab, detector_url: str, progress: Callable[[str], None]) -> None:
        self.lab = lab
        self.detector_url = detector_url
        self.progress = progress
        self.started = time.monotonic()
        self.episodes: list[Episode] = []
        self.base = 1.0                     # demand of the round, as a factor of the lab's own
        self.base_fault: str | None = None

    def status(self) -> dict:
        response = requests.get(f"{self.detector_url}{c.API_PREFIX}/status", timeout=5)
        response.raise_for_status()
        return response.json()

    def wait_for_model(self, timeout: float = 420.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                body = self.status()
                if body.get("model") and body.get("verdict"):
                    return body["model"]
            except requests.RequestException:
                pass
            time.sleep(3)
        raise LabError(f"the DDoS detector trained no model within {timeout:.0f} s; see its log in the lab's data dir")

    def wait_for_retrain(self, after: float, timeout: float = 600.0) -> None:
        """Until the detector has retrained after ``after`` (epoch s): a candidate it kept or one
        it refused as worse (then the surges meet the older model, and their rows say so)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.status()
            trained = (body.get("model") or {}).get("trained_at", 0)
            attempted = (body.get("last_retrain") or {}).get("at", 0)
            if max(trained, attempted) > after:
                return
            time.sleep(5)
        raise LabError(f"the DDoS detector kept its model for {timeout:.0f} s; no retraining to measure")

    def _surge(self, factor: float, seconds: float, reason: str) -> str:
        return self.lab.set_fault({"kind": c.FaultKind.VOLUME_SURGE.value, "target": c.GATEWAY, "factor": factor,
                                   "ttl_seconds": int(seconds + 30), "reason": reason})["id"]

    def episode(self, round_name: str, kind: str, factor: float | None, start: Callable[[], str],
                hold: float, *, stop_on_attack: bool = False) -> Episode:
        body = self.status()
        model = body.get("model") or {}
        trained = model.get("trained_at")
        episode = Episode(round_name, kind, factor, model.get("source"),
                          round(time.time() - trained) if trained else None, time.monotonic() - self.started,
                          (model.get("threshold")))
        fault_id = start()
        began = time.monotonic()
        try:
            while (elapsed := time.monotonic() - began) < hold:
                verdict = self.status().get("verdict")
                if verdict:
                    episode.samples.append({"t": round(elapsed, 1), **verdict})
                    if stop_on_attack and verdict["attack"]:
                        break
                time.sleep(SAMPLE_INTERVAL_S)
        finally:
            self.lab.clear_fault(fault_id)
        self.episodes.append(episode)
        return episode

    def surge_round(self, name: str, factors: tuple[float, ...], hold: float, cooldown: float) -> None:
        for factor in factors:
            self.progress(f"[{name}] surge x{factor:g} for {hold:.0f} s")
            # At a peak, one fault holds peak and surge together (a target has one surge at a time).
            total = round(self.base * factor, 3)
            self.set_base(1.0, keep=True)
            try:
                ep = self.episode(name, "surge", factor, lambda: self._surge(total, hold, f"bench: surge x{factor:g}"),
                                  hold)
            finally:
                self.set_base(self.base)
            self._report(ep)
            time.sleep(cooldown)

    def set_base(self, factor: float, *, keep: bool = False) -> None:
        """Demand of the round (a business peak is a long surge); ``keep`` remembers the old one."""
        if self.base_fault is not None:
            self.lab.clear_fault(self.base_fault)
            self.base_fault = None
        if factor > 1:
            self.base_fault = self._surge(factor, 3600, "bench: business peak")
        if not keep:
            self.base = factor

    def flood(self, name: str, rps: int, cooldown: float) -> None:
        self.progress(f"[{name}] flood of {rps} req/s")
        ep = self.episode(name, "flood", None, lambda: self.lab.set_fault({
            "kind": c.FaultKind.DDOS_FLOOD.value, "target": c.GATEWAY, "rps": rps, "ttl_seconds": 120,
            "reason": "bench: flood"})["id"], 90.0, stop_on_attack=True)
        self._report(ep)
        time.sleep(cooldown)

    def _report(self, ep: Episode) -> None:
        s = ep.summary()
        if ep.kind == "flood":
            self.progress(f"    detected after {s['detected_s']} s (peak score {s['peak_score']})")
        else:
            self.progress(f"    peak score {s['peak_score']} (threshold {s['threshold']}), hostile {s['peak_hostile_score']}, "
                          f"{s['attack_verdicts']} attack verdicts of {s['samples']}; top {s['peak_top_contributions']}")


def run(args: argparse.Namespace) -> int:
    factors = parse_factors(args.factors)
    if args.rounds < 1 or args.hold < 10 or args.cooldown < 0:
        raise LabError("--rounds must be >= 1, --hold >= 10 seconds and --cooldown >= 0")

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    stopped = ""
    with tempfile.TemporaryDirectory(prefix="obslab-bench-") as directory, _environment(**LAB_LOAD):
        data_dir = Path(directory) / "data"
        native = NativeLab(data_dir, offset=args.port_offset, profile=FAST, out=sys.stderr)
        progress(f"starting a fresh fast-profile lab (ports +{args.port_offset}) ...")
        try:
            if native.up(detach=True, timeout=120) != 0:
                raise LabError("the benchmark lab did not become healthy; see the table above")
            lab = Lab.connect(data_dir)
            bench = SurgeBench(lab, lab.urls[c.DDOS_DETECTOR], progress)
            progress("waiting for the detector to train on the lab's own traffic ...")
            bench.wait_for_model()
            try:
                measure(bench, factors, args)
            except (requests.RequestException, DrillError) as exc:
                # What was measured is still worth printing; the run counts as failed.
                stopped = f"the benchmark stopped early: {exc}"
        finally:
            native.down()
    status = report(bench, factors, as_json=args.json)
    if stopped:
        raise LabError(stopped)
    return status


def measure(bench: SurgeBench, factors: tuple[float, ...], args: argparse.Namespace) -> None:
    for index in range(args.rounds):
        name = "fresh" if index == 0 else f"retrained-{index}"
        if index:
            bench.wait_for_retrain(time.time())
        bench.surge_round(name, factors, args.hold, args.cooldown)
        bench.flood(name, args.flood_rps, args.cooldown)
    if not args.no_peak:
        bench.progress(f"[peak] demand x{PEAK_FACTOR:g} until a model retrained on it is in use ...")
        try:
            bench.set_base(PEAK_FACTOR)
            # A retraining once the baselines hold the peak (and its training window with them).
            bench.wait_for_retrain(time.time() + SETTLE_S)
            bench.surge_round("peak", factors, args.hold, args.cooldown)
            bench.flood("peak", args.flood_rps, args.cooldown)
        finally:
            bench.set_base(1.0)


def report(bench: SurgeBench, factors: tuple[float, ...], *, as_json: bool) -> int:
    surges = [e for e in bench.episodes if e.kind == "surge"]
    floods = [e for e in bench.episodes if e.kind == "flood"]
    false_verdicts = sum(e.attacks for e in surges)
    missed = [e for e in floods if e.detected_s is None or e.detected_s > FLOOD_TARGET_S]
    if as_json:
        print(json.dumps({"episodes": [{**e.summary(), "samples": e.samples} for e in bench.episodes],
                          "false_attack_verdicts": false_verdicts, "floods_missed": len(missed)}))
        return 1 if false_verdicts or missed else 0
    print("\nobslab bench ddos: legitimate surges and floods on a fresh fast-profile lab")
    print(f"{'round':14}{'factor':>7}{'model':>12}{'age s':>7}{'peak':>7}{'thresh':>8}{'hostile':>8}{'volume':>8}"
          f"{'attacks':>9}  top contributions")
    for e in surges:
        s = e.summary()
        top = ", ".join(f"{k} {v:.2f}" for k, v in s["peak_top_contributions"].items())
        print(f"{e.round:14}{e.factor:>7g}{str(e.model_source):>12}{str(e.model_age_s):>7}"
              f"{s['peak_score'] or 0:>7.3f}{e.threshold or 0:>8.3f}{s['peak_hostile_score'] or 0:>8.3f}"
              f"{2 ** (s['peak_volume_ratio'] or 0):>7.2f}x"
              f"{e.attacks:>4} /{len(e.samples):<4}  {top}")
    for factor in factors:
        peaks = [e.peak["score"] for e in surges if e.factor == factor and e.peak]
        if peaks:
            print(f"x{factor:g}: peak score over {len(peaks)} surges: min {min(peaks):.3f}, median "
                  f"{statistics.median(peaks):.3f}, max {max(peaks):.3f}")
    for e in floods:
        print(f"flood ({e.round}): first attack verdict after {e.detected_s} s")
    print(f"\nattack verdicts during legitimate surges: {false_verdicts} (target 0); floods detected within "
          f"{FLOOD_TARGET_S:.0f} s: {len(floods) - len(missed)} of {len(floods)}")
    return 1 if false_verdicts or missed else 0

