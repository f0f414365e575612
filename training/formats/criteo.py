"""Criteo-format text logs (label, I1..I13, C1..C26), streamed (`training.criteo`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from model.features import FeatureSpace
from training.config import DataConfig
from training.data import Dataset, Prepared
from training.formats.base import Format, one

if TYPE_CHECKING:  # onnxruntime: imported by afm-eval when it loads the bundle; torch: training
    from model.bundle import Bundle
    from training.stream.team import Team


def prepare(data: DataConfig, cache_root: Path, previous: FeatureSpace | None,
            seed: int = 0, team: Team | None = None) -> Prepared:
    from training import criteo  # pyarrow: imported when used

    return criteo.prepare(data, cache_root, previous, seed, team)


def read(paths: list[str], bundle: Bundle) -> Iterator[Dataset]:
    """Blocks of a Criteo-format file (its delimiter and header read off its first line),
    scored one at a time: memory does not grow with the file."""
    from training import criteo

    return criteo.evaluation_data(one(paths, "criteo"), bundle.features, bundle.manifest.task)


FORMAT = Format("criteo", "criteo rows (label, I1..I13, C1..C26)", prepare, read, on_every_rank=True)
