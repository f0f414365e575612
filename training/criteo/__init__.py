"""Criteo-format click logs (label, I1..I13, C1..C26) -> feature space and cached shards.

    prepare(data, cache_root)            -> Prepared(space, train, validation, fingerprints)
    prepare(data, cache_root, previous)  -> ... and `mapping`: a new day's space grown from
                                            a previous model's (old index -> new index)
    evaluation_data(path, space, task)   -> blocks of a file encoded with a bundle's space

Two streaming passes, memory bounded by the block and the vocabulary, never by the rows:
pass 1 counts categorical values and integer statistics (`counts`), the feature space is
derived from the counts (`vocab`), pass 2 encodes rows into shards (`encode`,
`training.shards`). Counts are cached per raw file (so a new `min_count` or transform
only re-encodes), shards per file and feature space; a changed file (size, mtime) or
setting builds anew.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from tqdm import tqdm

from model.features import FeatureSpace
from model.manifest import DataFingerprint, Task
from training.config import CriteoOptions, DataConfig
from training.criteo.counts import Counts, count
from training.criteo.encode import Encoder, datasets
from training.criteo.reader import Reader, sniff
from training.criteo.vocab import feature_space, grow
from training.data import Dataset, Prepared

if TYPE_CHECKING:  # training.shards imports torch, which afm-eval does not need
    from training.shards import Shards

log = logging.getLogger(__name__)
VERSION = 1  # of the cached layouts below: bump to rebuild every cache


def prepare(data: DataConfig, cache_root: Path, previous: FeatureSpace | None = None,
            seed: int = 0) -> Prepared:
    """`seed` chooses the negative rows kept when `data` downsamples them."""
    if not data.train or not data.validation:
        raise ValueError("format = 'criteo' needs data.train and data.validation files")
    options = data.criteo
    counts = Counts.load(counts_dir(Path(data.train), options, cache_root))
    mapping = None
    if previous is None:
        space = feature_space(counts, options, data.min_count)
    else:
        grown = grow(previous, counts, options, data.min_count, options.keep_dropped)
        space, mapping = grown.space, grown.mapping
    train = shards(Path(data.train), space, data.task, options, cache_root,
                   keep_negatives=data.negative_keep_rate, seed=seed)
    validation = shards(Path(data.validation), space, data.task, options, cache_root,
                        keep_negatives=data.validation_negative_keep_rate, seed=seed)
    prints = {name: DataFingerprint(**s.meta["fingerprint"])
              for name, s in (("train", train), ("validation", validation))}
    log.info("criteo: %d fields, %d features; %d train rows, %d validation rows (%d values out of "
             "vocabulary)", space.num_fields, space.num_features, len(train), len(validation),
             validation.oov)
    return Prepared(space, train, validation, prints, mapping)


def counts_dir(path: Path, options: CriteoOptions, cache_root: Path) -> Path:
    """Pass 1 over a training file, cached: value counts and integer statistics."""
    from training.shards import cached, file_key

    key = {"kind": "criteo-counts", "version": VERSION, "file": file_key(path),
           **_parsing(options)}

    def build(directory: Path) -> None:
        reader = Reader(path, options)
        counts = count(_progress(reader.blocks(), f"counting {path.name}"))
        counts.save(directory)

    return cached(cache_root, key, build)


def shards(path: Path, space: FeatureSpace, task: Task, options: CriteoOptions,
           cache_root: Path, *, keep_negatives: float = 1.0, seed: int = 0) -> Shards:
    """Pass 2 over a file, cached: its rows encoded with `space` as shards (negatives kept
    at `keep_negatives`, chosen by `seed`)."""
    from training.downsample import cache_key
    from training.shards import Shards, ShardWriter, cached, file_key

    key = {"kind": "criteo-shards", "version": VERSION, "file": file_key(path), "task": task,
           "space": space_digest(space), "rows_per_shard": options.rows_per_shard,
           **_parsing(options), **cache_key(keep_negatives, seed)}

    def build(directory: Path) -> None:
        encoder = Encoder(space, task)
        writer = ShardWriter(directory, space.num_fields, 1, rows_per_shard=options.rows_per_shard,
                             implicit_weights=encoder.implicit, keep_negatives=keep_negatives,
                             seed=seed)
        reader, oov = Reader(path, options), 0
        for batch in _progress(reader.blocks(), f"encoding {path.name}"):
            block = encoder.encode(batch)
            writer.append(block.indices, block.weights, block.labels)
            oov += block.oov
        fingerprint = DataFingerprint(path=str(path), sha256=reader.sha256, rows=reader.rows)
        writer.finish(oov, {"format": "criteo", "fingerprint": fingerprint.model_dump()})

    return Shards.open(cached(cache_root, key, build))


def evaluation_data(path: str | Path, space: FeatureSpace, task: Task,
                    options: CriteoOptions | None = None) -> Iterator[Dataset]:
    """A labelled file encoded with an existing (e.g. a bundle's) feature space, block by
    block; the delimiter and header are read off the file's first line unless given."""
    path = Path(path)
    if options is None:
        delimiter, header = sniff(path)
        options = CriteoOptions(delimiter=delimiter, header=header)
    return datasets(Reader(path, options).blocks(), Encoder(space, task))


def space_digest(space: FeatureSpace) -> str:
    digest = hashlib.sha256()
    for spec in space.fields:
        digest.update(spec.model_dump_json().encode())
    return digest.hexdigest()


def _parsing(options: CriteoOptions) -> dict[str, Any]:
    return {"delimiter": options.delimiter, "header": options.header}


def _progress(blocks: Iterable[pa.RecordBatch], what: str) -> Iterator[pa.RecordBatch]:
    """Blocks with a progress bar in rows/s (on a terminal) and a summary line in the log."""
    began, rows = time.perf_counter(), 0
    with tqdm(desc=what, unit=" rows", unit_scale=True, mininterval=1.0, disable=None) as bar:
        for batch in blocks:
            rows += batch.num_rows
            bar.update(batch.num_rows)
            yield batch
    seconds = time.perf_counter() - began
    log.info("%s: %d rows in %.1f s (%.0f rows/s)", what, rows, seconds, rows / max(seconds, 1e-9))
