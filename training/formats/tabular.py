"""Delimited files declared by a tabular schema (TOML): data.train and afm-eval's --data
name the schema; the schema splits the rows (`training.tabular`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from model.features import FeatureSpace
from training.config import DataConfig
from training.data import Dataset, Prepared
from training.formats.base import Format, has_suffix, in_memory, one

if TYPE_CHECKING:  # onnxruntime: imported by afm-eval when it loads the bundle
    from model.bundle import Bundle


def prepare(data: DataConfig, cache_root: Path, previous: FeatureSpace | None,
            seed: int = 0, team: object = None) -> Prepared:
    from training import tabular  # pandas: imported when used

    space, splits = tabular.load(data)
    return in_memory(data, cache_root, space, splits, seed)


def read(paths: list[str], bundle: Bundle) -> Dataset:
    from training import tabular

    return tabular.evaluation_data(one(paths, "tabular"), bundle.features, bundle.manifest.task)


FORMAT = Format("tabular", "a tabular schema file (its validation split, or all rows with "
                "split.method = 'none')", prepare, read, has_suffix(".toml"))
