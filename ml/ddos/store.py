"""Trained DDoS models on disk, with the metadata an operator needs to trust or reject one.

``<model-dir>/model.joblib`` holds the fitted estimators (joblib: scikit-learn's recommended
persistence); ``model.json`` beside it is readable without Python: features, training window,
row counts, library versions, validation figures. A model saved by other library versions
still loads but is reported, since scikit-learn does not promise pickles across versions.
Every retraining decision (accepted or refused, with both models' figures) is appended to
``retraining.jsonl``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import joblib
import numpy as np
import sklearn

from obslab.ml.ddos.features import FEATURE_NAMES
from obslab.ml.ddos.model import DDoSModel

MODEL_FILE = "model.joblib"
METADATA_FILE = "model.json"
DECISIONS_FILE = "retraining.jsonl"


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__, "numpy": np.__version__}


def save(model: DDoSModel, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.metadata.setdefault("saved_at", time.time())
    model.metadata["libraries"] = library_versions()
    model.metadata["features"] = list(model.features)
    model.metadata["threshold"] = model.threshold
    # Write then rename: the detector may load while a retrain saves.
    for name, write in ((MODEL_FILE, lambda p: joblib.dump(model, p)),
                        (METADATA_FILE, lambda p: p.write_text(json.dumps(model.metadata, indent=2)))):
        partial = directory / f".{name}.partial"
        write(partial)
        os.replace(partial, directory / name)
    return directory / MODEL_FILE


class ModelUnusable(RuntimeError):
    pass


def load(directory: Path) -> DDoSModel | None:
    path = directory / MODEL_FILE
    if not path.exists():
        return None
    try:
        model = joblib.load(path)
    except Exception as exc:  # a corrupt or foreign file: say which, never crash the detector
        raise ModelUnusable(f"{path}: cannot load ({type(exc).__name__}: {exc}); retrain with "
                            "`obslab ml train ddos`") from exc
    if not isinstance(model, DDoSModel) or tuple(model.features) != FEATURE_NAMES:
        raise ModelUnusable(f"{path}: trained on other features; retrain with `obslab ml train ddos`")
    return model


def record_decision(directory: Path, decision: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / DECISIONS_FILE).open("a") as out:
        out.write(json.dumps({"at": time.time(), **decision}) + "\n")
