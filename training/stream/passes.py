"""The two passes over a source, each cached in the data cache (`training.shards.cached`).

Counts are cached per source and fields (so a new `min_count`, transform or hash buckets
only re-encodes), shards per source, feature space and settings; a changed file (size,
mtime) or setting builds anew. Every cache key of the streamed formats is built here.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from model.features import FeatureSpace, FieldKind
from model.manifest import DataFingerprint, Task
from training.data import Dataset, Prepared
from training.downsample import EVERY_ROW, KeepRates, cache_key
from training.stream import Source
from training.stream.counts import Counts, count
from training.stream.encode import Encoder, datasets

if TYPE_CHECKING:  # training.shards imports torch, which afm-eval does not need
    from training.shards import Shards

log = logging.getLogger(__name__)
VERSION = 2  # of the cached layouts below: bump to rebuild every cache


def counts(source: Source, kinds: Mapping[str, FieldKind], cache_root: Path) -> Counts:
    """Pass 1 over the training rows, cached: value counts and numeric moments."""
    from training.shards import cached

    key = {"kind": "counts", "version": VERSION, "source": source.key(), "fields": dict(kinds)}

    def build(directory: Path) -> None:
        count(progress(source.batches(), f"counting {source.name}"), kinds).save(directory)

    return Counts.load(cached(cache_root, key, build))


def shards(source: Source, space: FeatureSpace, task: Task, cache_root: Path,
           rows_per_shard: int, *, keep_negatives: float = 1.0, seed: int = 0) -> Shards:
    """Pass 2 over a source, cached: its rows encoded with `space` as shards, negatives kept
    at `keep_negatives` (chosen by `seed`); the source's fingerprint goes into the shard set's
    metadata."""
    from training.shards import Shards, ShardWriter, cached

    key = {"kind": "shards", "version": VERSION, "source": source.key(), "task": task,
           "space": space_digest(space), "rows_per_shard": rows_per_shard,
           **cache_key(keep_negatives, seed)}

    def build(directory: Path) -> None:
        encoder = Encoder(space, task)
        writer = ShardWriter(directory, space.num_fields, space.max_entries,
                             rows_per_shard=rows_per_shard, implicit_weights=encoder.implicit,
                             keep_negatives=keep_negatives, seed=seed)
        oov = 0
        for batch in progress(source.batches(), f"encoding {source.name}"):
            block = encoder.encode(batch)
            writer.append(block.indices, block.weights, block.labels)
            oov += block.oov
        writer.finish(oov, {"fingerprint": source.fingerprint().model_dump()})

    return Shards.open(cached(cache_root, key, build))


def prepared(space: FeatureSpace, train: Source, validation: Source, task: Task, cache_root: Path,
             rows_per_shard: int, mapping: np.ndarray | None = None, *,
             keep: KeepRates = EVERY_ROW) -> Prepared:
    """Both splits encoded with `space` (pass 2, cached), negatives kept at `keep`'s rates,
    with their sources' fingerprints."""
    sets = [shards(source, space, task, cache_root, rows_per_shard, keep_negatives=rate, seed=keep.seed)
            for source, rate in ((train, keep.train), (validation, keep.validation))]
    prints = {name: DataFingerprint(**s.meta["fingerprint"])
              for name, s in zip(("train", "validation"), sets, strict=True)}
    return Prepared(space, sets[0], sets[1], prints, mapping)


def evaluation(source: Source, space: FeatureSpace, task: Task) -> Iterator[Dataset]:
    """A source's rows encoded with an existing (e.g. a bundle's) feature space, block by block."""
    return datasets(source.batches(), Encoder(space, task))


def space_digest(space: FeatureSpace) -> str:
    digest = hashlib.sha256()
    for spec in space.fields:
        digest.update(spec.model_dump_json().encode())
    return digest.hexdigest()


def progress(blocks: Iterable[pa.RecordBatch], what: str) -> Iterator[pa.RecordBatch]:
    """Blocks with a progress bar in rows/s (on a terminal) and a summary line in the log:
    wall time, and the process's CPU time (all its threads; what a shared machine does not skew)."""
    began, cpu, rows = time.perf_counter(), time.process_time(), 0
    with tqdm(desc=what, unit=" rows", unit_scale=True, mininterval=1.0, disable=None) as bar:
        for batch in blocks:
            rows += batch.num_rows
            bar.update(batch.num_rows)
            yield batch
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    log.info("%s: %d rows in %.1f s (%.0f rows/s, %.2f s CPU)", what, rows, seconds,
             rows / max(seconds, 1e-9), cpu)
