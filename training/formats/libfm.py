"""libFM files (`label idx:1 idx:1 ...`): read whole, one file per split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from model.features import FeatureSpace
from training import libfm
from training.config import DataConfig
from training.data import Dataset, Prepared, Splits, binary_labels, fingerprint, one_path
from training.errors import UsageError
from training.formats.base import Format, has_suffix, in_memory, one

if TYPE_CHECKING:  # onnxruntime: imported by afm-eval when it loads the bundle
    from model.bundle import Bundle


def prepare(data: DataConfig, cache_root: Path, previous: FeatureSpace | None,
            seed: int = 0, team: object = None) -> Prepared:
    train_path = one_path(data.train, "data.train")
    valid_path = one_path(data.validation, "data.validation")
    train_rows, valid_rows = libfm.read_libfm(train_path), libfm.read_libfm(valid_path)
    space = libfm.feature_space(train_rows, data.fields, data.min_count)
    train = libfm.encode(space, train_rows, binary_labels(train_rows.labels, data.task))
    validation = libfm.encode(space, valid_rows, binary_labels(valid_rows.labels, data.task))
    prints = {"train": fingerprint(train_path, len(train)),
              "validation": fingerprint(valid_path, len(validation))}
    return in_memory(data, cache_root, space, Splits(train, validation, prints), seed)


def read(paths: list[str], bundle: Bundle) -> Dataset:
    path = one(paths, "libfm")
    rows = libfm.read_libfm(path)
    try:
        return libfm.encode(bundle.features, rows, binary_labels(rows.labels, bundle.manifest.task))
    except ValueError as e:
        raise UsageError(f"{path}: {e}: is this the data the model was trained on?") from e


FORMAT = Format("libfm", "libFM rows", prepare, read, has_suffix(".libfm"))
