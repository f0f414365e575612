"""JSON lines of {"instance": {field: value, ...}, "label": y}: what the service takes, with
a label; read by afm-eval through the service's own encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.data import Dataset, binary_labels
from training.errors import UsageError
from training.formats.base import Format, has_suffix, one

if TYPE_CHECKING:  # onnxruntime: imported by afm-eval when it loads the bundle
    from model.bundle import Bundle


def read(paths: list[str], bundle: Bundle) -> Dataset:
    path = one(paths, "jsonl")
    instances, labels = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            instances.append(record["instance"])
            labels.append(float(record["label"]))
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{path} line {number}: each line must be "
                             '{"instance": {field: value, ...}, "label": number}') from e
    encoded = bundle.features.encode(instances)
    labelled = binary_labels(np.array(labels, dtype=np.float32), bundle.manifest.task)
    return Dataset(encoded.indices, encoded.weights, labelled, len(encoded.oov))


FORMAT = Format("jsonl", 'JSON lines of {"instance": {...}, "label": y}', read=read,
                recognises=has_suffix(".jsonl"))
