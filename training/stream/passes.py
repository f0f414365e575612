"""The two passes over a source, each cached in the data cache (`training.shards.cached`),
each shared out piece by piece among the ranks and their worker processes (`team`).

Counts are cached per source and fields (so a new `min_count`, transform or hash buckets
only re-encodes), shards per source, feature space and settings; a changed file (size,
mtime) or setting builds anew. Every cache key of the streamed formats is built here.
"""

from __future__ import annotations

import hashlib
import logging
import resource
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
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
from training.stream.counts import Counts, count, merge_stats, merge_values
from training.stream.encode import Encoder, datasets

if TYPE_CHECKING:  # training.shards imports torch, which afm-eval does not need
    from training.shards import Shards
    from training.stream.team import Team

log = logging.getLogger(__name__)
VERSION = 3  # of the cached layouts below: bump to rebuild every cache


def counts(source: Source, kinds: Mapping[str, FieldKind], cache_root: Path,
           team: Team | None = None) -> Counts:
    """Pass 1 over the training rows, cached: value counts and numeric moments. Every piece
    of the source is counted on its own (by `team`: the ranks and their worker processes),
    then the pieces' counts are summed field by field."""
    from training.stream.team import Team, cached_together

    team = team or Team()
    key = {"kind": "counts", "version": VERSION, "source": source.key(), "fields": dict(kinds)}

    def build(work: Path, out: Path) -> None:
        began, cpu = _clocks()
        pieces = list(source.pieces())
        team.run(range(len(pieces)), _CountPiece(pieces, dict(kinds), work))
        parts = [work / f"{k:05d}" for k in range(len(pieces))]
        counted = [name for name, kind in kinds.items() if kind in (FieldKind.CATEGORICAL, FieldKind.MULTI)]
        merging = time.perf_counter()
        team.run(counted, _MergeField(parts, out))
        if team.is_main:
            merge_stats(parts, out)
            _log_pass(f"counting {source.name}", Counts.load(out).rows, began, cpu, len(pieces), team,
                      f", {time.perf_counter() - merging:.1f} s of it merging the pieces' counts")
        team.barrier()

    return Counts.load(cached_together(cache_root, key, team, build))


def shards(source: Source, space: FeatureSpace, task: Task, cache_root: Path,
           rows_per_shard: int, *, keep_negatives: float = 1.0, seed: int = 0,
           team: Team | None = None) -> Shards:
    """Pass 2 over a source, cached: its rows encoded with `space` as shards, negatives kept
    at `keep_negatives` (chosen by `seed`); the source's fingerprint goes into the shard set's
    metadata. Every piece of the source is encoded into its own shards (by `team`), which are
    then renumbered, in piece order, into one shard set."""
    from training.shards import Shards, concatenate
    from training.stream.team import Team, cached_together

    team = team or Team()
    key = {"kind": "shards", "version": VERSION, "source": source.key(), "task": task,
           "space": space_digest(space), "rows_per_shard": rows_per_shard,
           **cache_key(keep_negatives, seed)}

    def build(work: Path, out: Path) -> None:
        began, cpu = _clocks()
        pieces = list(source.pieces())
        with ThreadPoolExecutor(1) as hashing:  # rank 0 reads the raw data once more meanwhile
            printed = hashing.submit(source.fingerprint, 0) if team.is_main else None
            team.run(range(len(pieces)),
                     _EncodePiece(pieces, space, task, rows_per_shard, keep_negatives, seed, work))
        if printed is not None:
            parts = [Shards.open(work / f"{k:05d}") for k in range(len(pieces))]
            rows = sum(p.downsampling.rows_before for p in parts)
            fingerprint = printed.result().model_copy(update={"rows": rows})
            concatenate(parts, out, {"fingerprint": fingerprint.model_dump()})
            _log_pass(f"encoding {source.name}", rows, began, cpu, len(pieces), team)
        team.barrier()

    return Shards.open(cached_together(cache_root, key, team, build))


@dataclass(frozen=True)
class _CountPiece:
    """Pass 1 over piece k, into `work`/k."""

    pieces: list[Source]
    kinds: dict[str, FieldKind]
    work: Path

    def __call__(self, k: int) -> None:
        from training.shards import once

        piece = self.pieces[k]
        once(self.work / f"{k:05d}", lambda out: count(
            progress(piece.batches(), f"counting {piece.name}"), self.kinds).save(out))


@dataclass(frozen=True)
class _MergeField:
    """One field's value counts, summed over the pieces."""

    parts: list[Path]
    out: Path

    def __call__(self, name: str) -> None:
        merge_values(self.parts, name, self.out)


@dataclass
class _EncodePiece:
    """Pass 2 over piece k, into shards in `work`/k."""

    pieces: list[Source]
    space: FeatureSpace
    task: Task
    rows_per_shard: int
    keep_negatives: float
    seed: int
    work: Path

    @cached_property
    def encoder(self) -> Encoder:  # built once per process: a hash index per field
        return Encoder(self.space, self.task)

    def __call__(self, k: int) -> None:
        from training.shards import PIECE_ORDINALS, ShardWriter, once

        def write(directory: Path) -> None:
            writer = ShardWriter(directory, self.space.num_fields, self.space.max_entries,
                                 rows_per_shard=self.rows_per_shard,
                                 implicit_weights=self.encoder.implicit,
                                 keep_negatives=self.keep_negatives, seed=self.seed,
                                 first_ordinal=k * PIECE_ORDINALS)
            oov = 0
            for batch in progress(piece.batches(), f"encoding {piece.name}"):
                block = self.encoder.encode(batch)
                writer.append(block.indices, block.weights, block.labels)
                oov += block.oov
            writer.finish(oov)

        piece = self.pieces[k]
        once(self.work / f"{k:05d}", write)


def prepared(space: FeatureSpace, train: Source, validation: Source, task: Task, cache_root: Path,
             rows_per_shard: int, mapping: np.ndarray | None = None, *,
             keep: KeepRates = EVERY_ROW, team: Team | None = None) -> Prepared:
    """Both splits encoded with `space` (pass 2, cached, by `team`), negatives kept at
    `keep`'s rates, with their sources' fingerprints."""
    sets = [shards(source, space, task, cache_root, rows_per_shard, keep_negatives=rate,
                   seed=keep.seed, team=team)
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
    """Blocks with a progress bar in rows/s (on a terminal)."""
    with tqdm(desc=what, unit=" rows", unit_scale=True, mininterval=1.0, disable=None) as bar:
        for batch in blocks:
            bar.update(batch.num_rows)
            yield batch


def _clocks() -> tuple[float, float]:
    """Wall time, and the CPU time of this process and its finished worker processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time() + children.ru_utime + children.ru_stime


def _log_pass(what: str, rows: int, began: float, cpu: float, pieces: int, team: Team,
              more: str = "") -> None:
    """A pass's summary line: wall time, and the CPU time of this rank's processes (what a
    shared machine does not skew)."""
    now, cpu_now = _clocks()
    seconds = now - began
    log.info("%s: %d rows in %.1f s (%.0f rows/s, %.2f s CPU); %d piece%s, %d process%s%s",
             what, rows, seconds, rows / max(seconds, 1e-9), cpu_now - cpu, pieces,
             "" if pieces == 1 else "s", team.processes, "" if team.processes == 1 else "es", more)
