"""Datasets in model input form, and vocabularies built from training data."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.features import FeatureSpace
from model.manifest import DataFingerprint, Task

if TYPE_CHECKING:
    from training.shards import Shards


@dataclass
class Dataset:
    indices: np.ndarray  # (N, F, L) int64, or int32 as read from shards
    weights: np.ndarray  # (N, F, L) float32
    labels: np.ndarray  # (N,) float32: the target (regression) or 0/1 (binary)
    oov: int = 0  # how many values mapped to an out-of-vocabulary index

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.indices.shape[0] != n or self.weights.shape != self.indices.shape:
            raise ValueError(
                f"inconsistent dataset: indices {self.indices.shape}, "
                f"weights {self.weights.shape}, labels {self.labels.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Splits:
    train: Dataset
    validation: Dataset
    fingerprints: dict[str, DataFingerprint]


@dataclass
class Prepared:
    """A run's data after the pipeline: the feature space and both splits as shard sets."""

    space: FeatureSpace
    train: Shards
    validation: Shards
    fingerprints: dict[str, DataFingerprint]
    mapping: np.ndarray | None = None
    """With a previous model: its feature table's index -> this one's (-1: dropped)."""

    def label_range(self, task: Task) -> tuple[float, float]:
        """Binary: (0, 1); regression: the training labels' range (the paper clips to it)."""
        if task == "binary":
            return (0.0, 1.0)
        low, high = np.inf, -np.inf
        for k in range(len(self.train.sizes)):
            labels = self.train.shard(k).labels
            low, high = min(low, float(labels.min())), max(high, float(labels.max()))
        return (low, high)


def binary_labels(labels: np.ndarray, task: Task) -> np.ndarray:
    """Binary tasks learn 1 for a positive label (libFM's 1 against -1), else 0."""
    return (labels > 0).astype(np.float32) if task == "binary" else labels.astype(np.float32)


def build_vocabulary(values: Iterable[str], min_count: int = 1) -> list[str]:
    """Values seen at least `min_count` times, most frequent first (ties by value)."""
    counts = Counter(values)
    kept = [(value, n) for value, n in counts.items() if n >= min_count]
    return [value for value, _ in sorted(kept, key=lambda item: (-item[1], item[0]))]


def one_path(paths: str | list[str], key: str) -> str:
    """The one file of a data setting (`data.train`, ...) in a format that reads one file;
    a list of paths is for Parquet datasets."""
    if isinstance(paths, str):
        return paths
    if len(paths) != 1:
        raise ValueError(f"{key} takes one file in this format, got a list of {len(paths)} "
                         "(lists of paths are for format = 'parquet')")
    return paths[0]


def fingerprint(path: str | Path, rows: int) -> DataFingerprint:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return DataFingerprint(path=str(path), sha256=digest, rows=rows)


def file_key(path: Path) -> dict[str, Any]:
    """What a raw file contributes to a cache key: a changed file has a new size or mtime."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
