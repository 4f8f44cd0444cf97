"""``obslab ml train ddos``: retrain the DDoS model from the running lab's Prometheus.

The new model replaces the current one only if it does at least as well on the same validation
set (``--force`` replaces it anyway); the detector of a running lab picks the new file up at its
next evaluation. Prints the validation figures of both models and where the model went.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from obslab import profiles, settings

HELP = "the ML detectors' models: train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="ml_action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train a model from the lab's Prometheus")
    models = train.add_subparsers(dest="ml_model", required=True, metavar="MODEL")
    ddos = models.add_parser("ddos", help="the DDoS detector's Isolation Forest + One-Class SVM")
    ddos.add_argument("--data-dir", metavar="DIR",
                      help="lab state directory (default: $OBSLAB_DATA_DIR or .obslab/)")
    ddos.add_argument("--prometheus", metavar="URL",
                      help="Prometheus to read (default: the lab's, at its port offset)")
    ddos.add_argument("--profile", choices=sorted(profiles.PROFILES),
                      help="the lab's time profile (default: the running lab's, else production)")
    ddos.add_argument("--window", metavar="DURATION",
                      help="training window ending now, e.g. 6h or 15m (default: the profile's)")
    ddos.add_argument("--model-dir", metavar="DIR", help="where the model lives (default: $OBSLAB_DDOS_MODEL_DIR, else <data-dir>/ml/ddos)")
    ddos.add_argument("--force", action="store_true", help="replace the current model even if it is better")
    ddos.add_argument("--json", action="store_true", help="print one JSON object with the outcome")


def run(args: argparse.Namespace) -> int:
    from obslab.lab.native import NativeLab
    from obslab.ml.ddos import store
    from obslab.ml.ddos.retrain import retrain
    from obslab.ml.ddos.service import model_dir, windows
    from obslab.ml.ddos.training import NotEnoughData
    from obslab.ml.prometheus import PrometheusClient, PrometheusUnavailable

    data_dir = settings.data_dir(args.data_dir)
    profile = profiles.profile(args.profile or NativeLab(data_dir).recorded_profile() or profiles.PRODUCTION.name)
    window_s = settings.parse_duration(args.window) if args.window else profile.ddos_training_window_s
    if window_s < 60:
        raise settings.ConfigError("--window must be at least 1m")
    prometheus = PrometheusClient(args.prometheus or settings.service_url("prometheus"), timeout=30)
    directory = Path(args.model_dir) if args.model_dir else model_dir(data_dir)
    try:
        current = store.load(directory)
    except store.ModelUnusable as exc:
        print(f"obslab: {exc}; training a replacement", file=sys.stderr)
        current = None
    end = time.time()
    print(f"training on {prometheus.base_url}, last {args.window or f'{window_s:.0f}s'} "
          f"({profile.name} profile) ...", file=sys.stderr)
    try:
        outcome = retrain(prometheus, windows(profile), start=end - window_s, end=end,
                          step=float(profile.ml_evaluation_s), directory=directory, current=current,
                          source="obslab ml train ddos", force=args.force,
                          min_rows=profile.ddos_min_training_rows)
    except PrometheusUnavailable as exc:
        raise settings.ConfigError(f"{exc}; is the lab running (`obslab status`)?") from None
    except NotEnoughData as exc:
        raise settings.ConfigError(str(exc)) from None
    model = outcome.candidate
    if args.json:
        print(json.dumps({**outcome.summary(), "model_dir": str(directory),
                          "threshold": model.threshold, "rows": model.metadata["rows"]}))
    else:
        rows = model.metadata["rows"]
        print(f"rows: {rows['normal_observed']} normal, {rows['flood_observed']} during floods, "
              f"{rows['train_with_augmentation']} after augmentation; threshold {model.threshold:.3f}")
        print(f"candidate: {outcome.candidate_figures}")
        if outcome.current_figures is not None:
            print(f"current:   {outcome.current_figures}")
        verdict = "accepted" if outcome.accepted else "refused"
        print(f"{verdict}: {outcome.reason}; model dir {directory}")
    return 0 if outcome.accepted else 1
