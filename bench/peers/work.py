"""What every peer server does per request, shared so that only the framework differs:
the bundle loaded with the service's session options (`Bundle.load`, one intra-op
thread), a /predict body's instances encoded by the manifest's `FeatureSpace` and scored,
or the Open Inference Protocol's raw tensors scored. Imports nothing of `service`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import Bundle
from model.manifest import OUTPUT_NAMES


def load(model_dir: str | Path | None = None) -> Bundle:
    return Bundle.load(model_dir or os.environ["AFM_MODEL_DIR"])


def predictions(bundle: Bundle, instances: list[dict[str, Any]]) -> list[dict[str, float]]:
    """What bench/bare.py answers: a score and what it means, per instance."""
    encoded = bundle.features.encode(instances)
    scores = bundle.run(encoded.indices, encoded.weights)
    label = "probability" if bundle.manifest.task == "binary" else "prediction"
    values = scores.prediction.tolist()
    return [{"score": score, label: value}
            for score, value in zip(scores.score.tolist(), values, strict=True)]


def infer(bundle: Bundle, indices: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of the model (what the service's infer answers when none is named)."""
    scores = bundle.run(indices.astype(np.int64, copy=False), weights.astype(np.float32, copy=False))
    return {name: getattr(scores, name) for name in OUTPUT_NAMES}


def arguments(prog: str) -> argparse.Namespace:
    """The flags bench/harness.py's ServerProcess passes (the bundle from AFM_MODEL_DIR)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    args.model_dir = Path(os.environ["AFM_MODEL_DIR"]).resolve()
    return args
