"""What a data format is: how it trains (`prepare`) and how afm-eval reads it (`read`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from model.features import FeatureSpace
from training.config import DataConfig
from training.data import Dataset, Prepared, Splits
from training.downsample import KeepRates, cache_key
from training.errors import UsageError

if TYPE_CHECKING:  # onnxruntime: imported by afm-eval when it loads the bundle; torch: training
    from model.bundle import Bundle
    from training.stream.team import Team



class Prepare(Protocol):
    """(data settings, cache root, the previous model's feature space or None, the run's seed,
    who prepares) -> both splits as shard sets in the cache, their negatives kept at the data's
    rates (the seed chooses which). A format that can grow a previous space (day-by-day
    retraining) returns the index mapping; otherwise training maps values by name. A format
    that prepares on every rank shares the work out among the `team`; the others ignore it."""

    def __call__(self, data: DataConfig, cache_root: Path, previous: FeatureSpace | None,
                 seed: int = 0, team: Team | None = None) -> Prepared: ...


Read = Callable[[list[str], "Bundle"], Dataset | Iterator[Dataset]]
"""(afm-eval's --data paths, the bundle) -> labelled rows encoded with the bundle's feature
space: in memory, or a stream of blocks where the format allows."""


@dataclass(frozen=True)
class Format:
    name: str
    describe: str
    """What --data holds, for afm-eval's help."""
    prepare: Prepare | None = None
    """None: afm-eval reads the format, training does not."""
    read: Read | None = None
    """None: training reads the format, afm-eval does not."""
    recognises: Callable[[str], bool] = lambda path: False
    """Whether afm-eval should read `path` in this format when --format is not given."""
    on_every_rank: bool = False
    """Prepared by every rank at once, each its share (the streamed formats); else rank 0
    prepares and the other ranks open its cache."""


def has_suffix(*suffixes: str) -> Callable[[str], bool]:
    return lambda path: path.lower().endswith(suffixes)


def one(paths: list[str], fmt: str) -> str:
    """The one file afm-eval reads in a format that takes one."""
    if len(paths) != 1:
        raise UsageError(f"--format {fmt} reads one file, got {len(paths)}: {' '.join(paths)}")
    return paths[0]


def in_memory(data: DataConfig, cache_root: Path, space: FeatureSpace, splits: Splits,
              seed: int = 0) -> Prepared:
    """Splits read and encoded in memory (libFM, tabular, synthetic), written as shard sets
    once per data settings, files and, when negatives are downsampled, rates and seed."""
    from training.shards import Shards, cached, write_dataset  # torch: training only

    keep = KeepRates.of(data, seed)
    hashes = {name: print_.sha256 for name, print_ in splits.fingerprints.items()}
    key = {"data": data.model_dump(exclude={"negative_keep_rate", "validation_negative_keep_rate",
                                            "workers"}),
           "fingerprints": hashes, **cache_key(keep.train, seed),
           **cache_key(keep.validation, seed, "validation_")}

    def build(directory: Path) -> None:
        write_dataset(directory / "train", splits.train, keep_negatives=keep.train, seed=seed)
        write_dataset(directory / "validation", splits.validation,
                      keep_negatives=keep.validation, seed=seed)

    directory = cached(cache_root, key, build)
    train, validation = Shards.open(directory / "train"), Shards.open(directory / "validation")
    return Prepared(space, train, validation, splits.fingerprints)
