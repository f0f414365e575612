"""The built-in generated data (`[data.synthetic]`); nothing to read from files."""

from __future__ import annotations

from pathlib import Path

from model.features import FeatureSpace
from training import synthetic
from training.config import DataConfig
from training.data import Prepared, Splits
from training.formats.base import Format, in_memory


def prepare(data: DataConfig, cache_root: Path, previous: FeatureSpace | None,
            seed: int = 0, team: object = None) -> Prepared:
    spec = synthetic.SyntheticSpec.model_validate(data.synthetic)
    space, train, validation = synthetic.datasets(spec)
    return in_memory(data, cache_root, space, Splits(train, validation, {}), seed)


FORMAT = Format("synthetic", "generated data", prepare)
