"""``obslab bench nab``: the lab's baselining detectors on the Numenta Anomaly Benchmark.

Every detector of :func:`obslab.ml.baselining.all_detectors` runs as a streaming detector over
each CSV of a NAB root; its anomaly scores are written as NAB's results files and scored with
NAB's published rules (:mod:`obslab.ml.nab.scoring`): one threshold per detector and profile,
normalised so that the null detector scores 0 and the perfect one 100. The table shows the
published scoreboard beside our rows, with a caveat when the root holds only part of the corpus.
``--lab-days`` adds the same scoring on the lab's own incidents (:mod:`obslab.ml.nab.lab_incidents`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from obslab import settings
from obslab.ml.nab import report
from obslab.ml.nab.corpus import load_corpus
from obslab.ml.nab.lab_incidents import MAX_DAYS, WARMUP_ROWS, build_lab_corpus
from obslab.ml.nab.runner import Detector, DetectorScores, run_detectors
from obslab.sim.incidents import DEFAULT_SEED

DEFAULT_LAB_DAYS = 2
PLOT_NAME = "nab_scores.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="NAB_ROOT",
                        help="NAB root holding data/<category>/*.csv and labels/combined_windows.json")
    parser.add_argument("--out", metavar="DIR",
                        help="where results files and the plot go (default: <lab data dir>/bench/nab)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the scores")
    parser.add_argument("--lab-days", type=int, default=DEFAULT_LAB_DAYS, metavar="N",
                        help=f"also score the lab's own simulated incidents over N days (0 skips; "
                             f"default: {DEFAULT_LAB_DAYS})")
    parser.add_argument("--detectors", metavar="NAME,...",
                        help="only these detectors, e.g. levelNovelty,ensemble (default: all of them)")
    parser.add_argument("--lab-seed", type=int, default=DEFAULT_SEED, metavar="N",
                        help=f"seed of the simulated lab traffic and incident times (default: {DEFAULT_SEED})")


def _all_detectors() -> list[Detector]:
    try:
        from obslab.ml.baselining import all_detectors
    except ImportError:
        raise settings.ConfigError("the baselining detectors are not installed: "
                                   "obslab.ml.baselining.all_detectors() is missing") from None
    return list(all_detectors())


def _days(days: int) -> str:
    return f"{days} day" if days == 1 else f"{days} days"


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _by_profile(scored: Sequence[DetectorScores], attribute: str,
                digits: int | None = 6) -> dict[str, dict[str, float]]:
    def shown(value: float) -> float:
        return value if digits is None else round(value, digits)
    return {s.detector: {p: shown(getattr(r, attribute)) for p, r in s.profiles.items()} for s in scored}


def run(args: argparse.Namespace, *, detectors: Sequence[Detector] | None = None) -> int:
    started = time.perf_counter()
    if not 0 <= args.lab_days <= MAX_DAYS:
        raise settings.ConfigError(f"--lab-days must be between 0 (skip) and {MAX_DAYS}, got {args.lab_days}")
    corpus = load_corpus(args.data)
    detectors = list(detectors) if detectors is not None else _all_detectors()
    if getattr(args, "detectors", None):
        wanted = [name.strip() for name in args.detectors.split(",") if name.strip()]
        known = {d.name: d for d in detectors}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise settings.ConfigError(f"--detectors: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
        detectors = [known[name] for name in wanted]
    if not detectors:
        raise settings.ConfigError("no detector to benchmark: all_detectors() returned none")
    out = Path(args.out).expanduser() if args.out else settings.data_dir(None) / "bench" / "nab"
    _progress(f"NAB: {len(detectors)} detectors over {len(corpus.files)} files ({corpus.rows:,} rows, "
              f"{corpus.windows} windows) from {corpus.root}; results in {out}")
    nab = run_detectors(corpus.files, detectors, out, progress=_progress)
    caveat = report.subset_caveat(corpus)

    lab = lab_scores = None
    if args.lab_days:
        _progress(f"lab incidents: simulating {_days(args.lab_days)} (seed {args.lab_seed}) ...")
        lab = build_lab_corpus(args.lab_days, args.lab_seed)
        lab_scores = run_detectors(lab.files, detectors, out / "lab", progress=_progress)

    scores = _by_profile(nab, "normalised")
    lab_normalised = _by_profile(lab_scores, "normalised") if lab_scores else None
    plot = report.save_plot(out / PLOT_NAME, scores, lab_normalised,
                            title=f"NAB scores on {len(corpus.files)} of {len(corpus.labelled)} NAB files"
                                  + (f" and {_days(args.lab_days)} of lab incidents" if lab else "")
                                  + "; dashed: published scoreboard (NAB v1.1)")
    (out / "final_results.json").write_text(json.dumps(scores, indent=4, sort_keys=True) + "\n")
    seconds = time.perf_counter() - started

    if args.json:
        document = {
            "files": len(corpus.files),
            "detectors": scores,
            "thresholds": _by_profile(nab, "threshold", None),
            "raw_scores": _by_profile(nab, "raw"),
            "baselines": {"null": {p: r.null for p, r in nab[0].profiles.items()},
                          "perfect": {p: r.perfect for p, r in nab[0].profiles.items()}},
            "corpus": {"root": str(corpus.root), "files_labelled": len(corpus.labelled), "rows": corpus.rows,
                       "windows": corpus.windows, "comparable_with_published": corpus.complete,
                       "caveat": caveat},
            "detector_seconds": {s.detector: round(s.seconds, 2) for s in nab},
            "out": str(out), "plot": str(plot), "seconds": round(seconds, 2),
        }
        if lab is not None and lab_scores is not None:
            document["lab"] = lab_normalised
            document["lab_thresholds"] = _by_profile(lab_scores, "threshold", None)
            document["lab_source"] = lab.describe()
        print(json.dumps(document))
        return 0

    print(f"\nobslab bench nab: {len(detectors)} detectors, {len(corpus.files)} NAB files ({corpus.rows:,} rows, "
          f"{corpus.windows} windows) from {corpus.root}; NAB v1.1 scoring rules")
    print(report.format_scores("NAB scores (0 = null detector, 100 = perfect; published rows: "
                               f"{report.PUBLISHED_SOURCE})", scores,
                               published=report.PUBLISHED_SCOREBOARD, notes=[f"! {caveat}"] if caveat else []))
    print("  thresholds (standard / low FP / low FN): " + "; ".join(
        f"{s.detector} " + " / ".join(f"{r.threshold:.4g}" for r in s.profiles.values()) for s in nab))
    if lab is not None and lab_normalised is not None:
        print(f"\nLab incidents: seed {lab.seed}, {_days(lab.days)} at {lab.step} s steps after {WARMUP_ROWS} "
              f"warm-up rows, {len(lab.files)} series, {len(lab.incidents)} incidents "
              f"({sum(len(f.windows) for f in lab.files)} windows); same scoring rules")
        print(report.format_scores("Lab scores (0 = null detector, 100 = perfect)", lab_normalised))
    print(f"\nResults files: {out} (NAB layout: <detector>/<category>/<detector>_<file>.csv)")
    print(f"Plot: {plot}")
    print(f"Wall time: {seconds:.1f} s")
    return 0
