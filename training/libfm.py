"""libFM files as the AFM authors ship them: `label idx:1 idx:1 ...`, one feature per field.

The field of a feature is its position in the row; its value in a field's vocabulary is
the libFM index as a string (so a served instance reads {"user": "12", "item": "1003"}).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.features import FeatureSpace, FieldKind, FieldSpec
from training.data import Dataset, build_vocabulary


@dataclass
class LibfmRows:
    labels: np.ndarray  # (N,) float32
    ids: np.ndarray  # (N, F) int64 libFM feature indices, in field order


def read_libfm(path: str | Path) -> LibfmRows:
    """Parse a libFM file in one vectorised pass (CRLF or LF line endings)."""
    raw = Path(path).read_bytes()
    lines = raw.replace(b"\r", b"").split(b"\n")
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no rows")
    width = len(lines[0].split())
    if any(len(line.split()) != width for line in lines):
        raise ValueError(f"{path}: every row must hold the same number of features (one per field)")
    if width < 3:
        raise ValueError(f"{path}: rows need a label and at least 2 features, got {width - 1} tokens")
    tokens = b" ".join(lines).replace(b":", b" ").split()
    table = np.array(tokens, dtype=np.float64).reshape(len(lines), 2 * width - 1)
    values = table[:, 2::2]
    if not np.all(values == 1.0):
        raise ValueError(f"{path}: only one-hot libFM rows (every value 1) are supported")
    return LibfmRows(labels=table[:, 0].astype(np.float32), ids=table[:, 1::2].astype(np.int64))


def field_names(num_fields: int, names: list[str]) -> list[str]:
    if names and len(names) != num_fields:
        raise ValueError(f"{len(names)} field names given for rows of {num_fields} fields")
    return names or [f"field{i}" for i in range(num_fields)]


def feature_space(rows: LibfmRows, names: list[str], min_count: int = 1) -> FeatureSpace:
    names = field_names(rows.ids.shape[1], names)
    fields = [
        FieldSpec(
            name=name,
            kind=FieldKind.CATEGORICAL,
            vocabulary=build_vocabulary(map(str, rows.ids[:, f].tolist()), min_count),
        )
        for f, name in enumerate(names)
    ]
    return FeatureSpace(fields)


def encode(space: FeatureSpace, rows: LibfmRows, labels: np.ndarray) -> Dataset:
    """Map every field's libFM ids to table indices through one lookup array per field."""
    n, num_fields = rows.ids.shape
    if num_fields != space.num_fields:
        raise ValueError(f"rows hold {num_fields} fields, the model takes {space.num_fields}")
    indices = np.zeros((n, num_fields, space.max_entries), dtype=np.int64)
    weights = np.zeros((n, num_fields, space.max_entries), dtype=np.float32)
    oov = 0
    for f in range(num_fields):
        column = rows.ids[:, f]
        known = np.array([int(v) for v in space.fields[f].values], dtype=np.int64)
        size = int(max(known.max(initial=0), column.max(initial=0))) + 1
        lookup = np.full(size, space.oov_index(f), dtype=np.int64)
        lookup[known] = space.offsets[f] + 1 + np.arange(len(known))
        mapped = lookup[np.clip(column, 0, size - 1)]
        mapped[column < 0] = space.oov_index(f)
        oov += int((mapped == space.oov_index(f)).sum())
        indices[:, f, 0] = mapped
        weights[:, f, 0] = 1.0
    return Dataset(indices, weights, labels, oov)
