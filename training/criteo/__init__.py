"""Criteo-format click logs (label, I1..I13, C1..C26) -> feature space and cached shards.

    prepare(data, cache_root)            -> Prepared(space, train, validation, fingerprints)
    prepare(data, cache_root, previous)  -> ... and `mapping`: a new day's space grown from
                                            a previous model's (old index -> new index)
    evaluation_data(path, space, task)   -> blocks of a file encoded with a bundle's space

The text reader (`reader`) is one source of Criteo-shaped rows; a Parquet table of the same
columns is another (`training.parquet`), and both go through `prepare_sources`: the two
streaming passes of `training.stream` (count, then encode into cached shards), with the
feature space derived from the counts (`vocab`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from model.features import FeatureSpace, FieldKind
from model.manifest import Task
from training.config import CriteoOptions, DataConfig
from training.criteo.reader import CATEGORICALS, INTEGERS, Reader, sniff
from training.criteo.vocab import feature_space, grow
from training.data import Dataset, Prepared, one_path
from training.downsample import KeepRates
from training.stream import Source, passes
from training.stream.counts import Counts

if TYPE_CHECKING:  # torch: training only
    from training.stream.team import Team

log = logging.getLogger(__name__)
KINDS = {**dict.fromkeys(INTEGERS, FieldKind.NUMERIC), **dict.fromkeys(CATEGORICALS, FieldKind.CATEGORICAL)}
"""What pass 1 counts: moments of the integers, values of the categorical columns."""


def prepare(data: DataConfig, cache_root: Path, previous: FeatureSpace | None = None,
            seed: int = 0, team: Team | None = None) -> Prepared:
    """`seed` chooses the negative rows kept when `data` downsamples them; `team` (every
    rank, each with `data.workers` processes) shares the work."""
    if not data.train or not data.validation:
        raise ValueError("format = 'criteo' needs data.train and data.validation files")
    train = Reader(Path(one_path(data.train, "data.train")), data.criteo)
    validation = Reader(Path(one_path(data.validation, "data.validation")), data.criteo)
    return prepare_sources(train, validation, data, cache_root, previous, data.criteo.rows_per_shard,
                           seed, team)


def prepare_sources(train: Source, validation: Source, data: DataConfig, cache_root: Path,
                    previous: FeatureSpace | None, rows_per_shard: int, seed: int = 0,
                    team: Team | None = None) -> Prepared:
    """Criteo-shaped rows from any two sources, encoded as `[data.criteo]` says (`seed`
    chooses the negative rows kept when `data` downsamples them), by `team`."""
    options = data.criteo
    counts = passes.counts(train, KINDS, cache_root, team)
    mapping = None
    if previous is None:
        space = feature_space(counts, options, data.min_count)
    else:
        grown = grow(previous, counts, options, data.min_count, options.keep_dropped)
        space, mapping = grown.space, grown.mapping
    return passes.prepared(space, train, validation, data.task, cache_root, rows_per_shard, mapping,
                           keep=KeepRates.of(data, seed), team=team)


def training_counts(path: Path, options: CriteoOptions, cache_root: Path) -> Counts:
    """Pass 1 over a training file (cached): value counts and integer statistics."""
    return passes.counts(Reader(path, options), KINDS, cache_root)


def evaluation_data(path: str | Path, space: FeatureSpace, task: Task,
                    options: CriteoOptions | None = None) -> Iterator[Dataset]:
    """A labelled file encoded with an existing (e.g. a bundle's) feature space, block by
    block; the delimiter and header are read off the file's first line unless given."""
    path = Path(path)
    if options is None:
        delimiter, header = sniff(path)
        options = CriteoOptions(delimiter=delimiter, header=header)
    return passes.evaluation(Reader(path, options), space, task)
