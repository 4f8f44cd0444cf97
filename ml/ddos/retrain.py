"""Train a candidate DDoS model and keep it only if it is not worse than the one in use.

Both models are judged on the *same* validation rows, drawn from the newest data (see
:mod:`obslab.ml.ddos.training`): F1 at each model's own threshold, so a candidate that
forgets an attack shape or starts flagging legitimate surges is refused. Ties go to the
candidate (it has seen the newer traffic). The decision and both sets of figures are appended
to ``retraining.jsonl`` beside the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from obslab.ml.ddos import store
from obslab.ml.ddos.features import Windows
from obslab.ml.ddos.model import DDoSModel, validation_figures
from obslab.ml.ddos.training import Dataset, collect, split
from obslab.ml.prometheus import PrometheusClient

# The candidate may be this much worse in F1 before it is refused (validation noise).
F1_TOLERANCE = 0.01


@dataclass(frozen=True)
class RetrainOutcome:
    accepted: bool
    reason: str
    candidate: DDoSModel
    candidate_figures: dict
    current_figures: dict | None

    def summary(self) -> dict:
        return {"accepted": self.accepted, "reason": self.reason, "candidate": self.candidate_figures,
                "current": self.current_figures, "at": time.time()}


def train_candidate(dataset: Dataset, *, source: str, seed: int = 0,
                    min_rows: int = 0) -> tuple[DDoSModel, dict, object]:
    parts = split(dataset, seed, min_rows)
    model = DDoSModel.train(parts.train, calibration_rows=parts.calibration,
                            calibration_attacks=parts.calibration_attacks, seed=seed)
    figures = validation_figures(model, parts.validation_normal, parts.validation_attacks)
    model.metadata.update({
        "trained_at": time.time(), "source": source,
        "training_window": {"start": dataset.start, "end": dataset.end, "step_seconds": dataset.step},
        "rows": {"normal_observed": int(len(dataset.normal)), "flood_observed": int(len(dataset.floods)),
                 "train_with_augmentation": int(len(parts.train))},
        "models": ["isolation_forest", "one_class_svm"], "validation": figures,
    })
    return model, figures, parts


def retrain(prometheus: PrometheusClient, windows: Windows, *, start: float, end: float, step: float,
            directory: Path, current: DDoSModel | None, source: str, force: bool = False,
            seed: int = 0, min_rows: int = 0) -> RetrainOutcome:
    dataset = collect(prometheus, windows, start=start, end=end, step=step, linger_s=windows.linger_s)
    candidate, figures, parts = train_candidate(dataset, source=source, seed=seed, min_rows=min_rows)
    current_figures = None
    if current is not None:
        current_figures = validation_figures(current, parts.validation_normal, parts.validation_attacks)
    if current_figures is not None and not force and figures["f1"] < current_figures["f1"] - F1_TOLERANCE:
        reason = f"candidate F1 {figures['f1']:.3f} < current {current_figures['f1']:.3f} on the same validation set"
        accepted = False
    else:
        reason = "no current model" if current is None else ("forced" if force else "not worse than current")
        accepted = True
        store.save(candidate, directory)
    outcome = RetrainOutcome(accepted, reason, candidate, figures, current_figures)
    store.record_decision(directory, {"source": source, **{k: v for k, v in outcome.summary().items() if k != "at"}})
    return outcome
