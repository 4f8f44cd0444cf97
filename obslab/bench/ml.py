"""``obslab bench ml``: the baseliner's refit at scale and the DDoS model's inference latency.

Baselining: every algorithm and the ensemble over ``--series`` x ``--points`` (default 1,000 x
5,760: one day at 15 s), run in a fresh process so that its peak memory is its own; the refit
of all of them is compared with the baseliner's 5-minute cycle.

DDoS: a model trained as the detector trains it (normal rows widened by demand changes), then
``--evaluations`` verdicts on rows drawn from normal traffic and floods, timed one by one:
p50/p99 of the model's part of an evaluation (scoring, calibration, per-feature contributions).
A live evaluation adds the PromQL queries; the running detector records the whole evaluation
in ``ml_evaluation_duration_seconds``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from obslab.settings import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--series", type=int, default=1000, help="baselined series (default: 1000)")
    parser.add_argument("--points", type=int, default=5760, help="points per series (default: 5760, a day at 15 s)")
    parser.add_argument("--step", type=float, default=15.0, help="seconds between points (default: 15)")
    parser.add_argument("--evaluations", type=int, default=2000, help="DDoS verdicts to time (default: 2000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the figures")


def _baselining(n_series: int, n_points: int, step_s: float) -> dict:
    from obslab.ml.baselining.bench import measure

    return measure(n_series=n_series, n_points=n_points, step_s=step_s,
                   progress=lambda text: print(text, file=sys.stderr, flush=True))


def ddos_inference(evaluations: int, seed: int = 0) -> dict:
    from obslab.ml.ddos.features import FEATURE_NAMES
    from obslab.ml.ddos.model import DDoSModel
    from obslab.ml.ddos.training import MILD, demand_changes, prior, synthetic_attacks

    rng = np.random.default_rng(seed)
    observed = np.zeros((300, len(FEATURE_NAMES)))
    observed[:, FEATURE_NAMES.index("auth_failure_share")] = rng.uniform(0, 0.03, 300)
    observed[:, FEATURE_NAMES.index("top_client_share")] = rng.uniform(0.02, 0.08, 300)
    normal = np.vstack([observed, demand_changes(observed, rng), prior(observed, rng)])
    started = time.perf_counter()
    model = DDoSModel.train(normal, calibration_rows=demand_changes(observed, rng, copies=2),
                            calibration_attacks=synthetic_attacks(observed, rng, strength=MILD), seed=seed)
    training_s = time.perf_counter() - started
    rows = np.vstack([prior(observed, rng, count=evaluations // 2),
                      synthetic_attacks(observed, rng, count=evaluations - evaluations // 2)])
    latencies = []
    for row in rows:
        tick = time.perf_counter()
        model.verdict(row)
        latencies.append((time.perf_counter() - tick) * 1000.0)
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"training_rows": len(normal), "training_s": round(training_s, 3), "evaluations": len(rows),
            "p50_ms": round(quantiles[49], 3), "p99_ms": round(quantiles[98], 3), "max_ms": round(max(latencies), 3)}


def run(args: argparse.Namespace) -> int:
    if args.series < 1 or args.points < 100 or args.step <= 0 or args.evaluations < 100:
        raise ConfigError("--series must be >= 1, --points >= 100, --step > 0 and --evaluations >= 100")
    print(f"baselining {args.series} series x {args.points} points (fresh process) ...", file=sys.stderr, flush=True)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        baselining = pool.submit(_baselining, args.series, args.points, args.step).result()
    print(f"DDoS inference, {args.evaluations} verdicts ...", file=sys.stderr, flush=True)
    ddos = ddos_inference(args.evaluations)
    figures = {"baselining": baselining, "ddos": ddos,
               "refit_all_algorithms_s": baselining["refit_cycle_s"], "refit_budget_s": 300.0}
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"\nBaselining {args.series} series x {args.points} points at {args.step:g} s:")
    print(f"  {'algorithm':<13} {'fit+bands s':>11} {'causal s':>9} {'flagged':>8}")
    for name, row in baselining["algorithms"].items():
        print(f"  {name:<13} {row.get('fit_s', float('nan')):>11.2f} {row.get('causal_s', float('nan')):>9.2f} "
              f"{row.get('flagged_share', float('nan')):>8.2%}")
    print(f"  refit of every algorithm: {baselining['refit_cycle_s']:.1f} s of the 300 s cycle; "
          f"whole run {baselining['total_s']:.1f} s; peak RSS growth "
          f"{baselining['peak_rss_growth_mib_getrusage']:.0f} MiB (getrusage, fresh process)")
    print(f"\nDDoS model ({ddos['training_rows']} training rows, trained in {ddos['training_s']} s): "
          f"verdict p50 {ddos['p50_ms']} ms, p99 {ddos['p99_ms']} ms over {ddos['evaluations']} evaluations")
    return 0
