"""Encoded data on disk: shards of int32 indices, float32 weights and labels, memory-mapped.

Every format reaches the model through here: a reader encodes raw rows once into a shard
set, and training and evaluation read batches from it with memory bounded by the batch
and the shuffle buffer, never by the number of rows. A shard set is a directory:

    index.json           shapes, rows per shard, oov count, the negative downsampling and its
                         counts, the writer's metadata (written last)
    00000.indices.npy    (n, F, L) int32
    00000.weights.npy    (n, F, L) float32; absent with implicit weights (1 where index != 0)
    00000.labels.npy     (n,) float32
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from model.features import PADDING_INDEX
from training.data import Dataset
from training.downsample import keep_mask

if TYPE_CHECKING:  # imported where batches are made: preprocessing workers do without it
    import torch

INDEX_FILE = "index.json"
SUFFIXES = (".indices.npy", ".weights.npy", ".labels.npy")
PIECE_ORDINALS = 1 << 40
"""Piece k of a source numbers its rows from k * PIECE_ORDINALS (for negative downsampling)."""


@dataclass(frozen=True)
class Downsampling:
    """Negative rows kept at `negative_keep_rate` (training.downsample), and the counts."""

    negative_keep_rate: float = 1.0
    seed: int = 0
    rows_before: int = 0
    negatives_before: int = 0
    negatives_after: int = 0

    @property
    def rows_after(self) -> int:
        return self.rows_before - self.negatives_before + self.negatives_after

    def describe(self) -> str:
        return (f"negatives kept at {self.negative_keep_rate:g} (seed {self.seed}): "
                f"{self.rows_before} -> {self.rows_after} rows, "
                f"{self.negatives_before} -> {self.negatives_after} negatives")


class ShardWriter:
    """Appends encoded rows; flushes a shard every `rows_per_shard` rows. With
    `keep_negatives` < 1 it keeps each negative row (label 0) iff a hash of (`seed`, the row's
    ordinal) falls under it: the same rows whoever writes them. The first row appended has
    ordinal `first_ordinal` (a source's piece k writes from k << 40: `PIECE_ORDINALS`)."""

    def __init__(self, directory: Path, num_fields: int, max_entries: int, *,
                 rows_per_shard: int = 1 << 19, implicit_weights: bool = False,
                 keep_negatives: float = 1.0, seed: int = 0, first_ordinal: int = 0) -> None:
        if rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be >= 1, got {rows_per_shard}")
        if not 0.0 < keep_negatives <= 1.0:
            raise ValueError(f"keep_negatives must be in (0, 1], got {keep_negatives}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shape = (num_fields, max_entries)
        self.rows_per_shard = rows_per_shard
        self.implicit_weights = implicit_weights
        self.sizes: list[int] = []
        self._pending: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []
        self._pending_rows = 0
        self.downsampling = Downsampling(keep_negatives, seed)
        self.first_ordinal = first_ordinal

    def append(self, indices: np.ndarray, weights: np.ndarray | None, labels: np.ndarray) -> None:
        n = len(labels)
        if indices.shape != (n, *self.shape):
            raise ValueError(f"indices of shape {indices.shape}, expected {(n, *self.shape)}")
        implicit = weights is None
        if implicit != self.implicit_weights or (weights is not None and weights.shape != indices.shape):
            raise ValueError("weights must be given, with the indices' shape, unless they are implicit")
        indices, weights, labels = self._downsample(indices, weights, labels)
        n = len(labels)
        while n:
            take = min(n, self.rows_per_shard - self._pending_rows)
            part_weights = None if weights is None else weights[:take]
            self._pending.append((indices[:take], part_weights, labels[:take]))
            self._pending_rows += take
            indices, labels = indices[take:], labels[take:]
            weights = None if weights is None else weights[take:]
            n -= take
            if self._pending_rows == self.rows_per_shard:
                self._flush()

    def _downsample(self, indices: np.ndarray, weights: np.ndarray | None, labels: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        d = self.downsampling
        kept = keep_mask(labels, self.first_ordinal + d.rows_before, d.negative_keep_rate, d.seed)
        negatives = int(np.count_nonzero(labels <= 0.5))
        self.downsampling = Downsampling(
            d.negative_keep_rate, d.seed, d.rows_before + len(labels),
            d.negatives_before + negatives, d.negatives_after + negatives - int(np.count_nonzero(~kept)))
        if kept.all():
            return indices, weights, labels
        return indices[kept], None if weights is None else weights[kept], labels[kept]

    def _flush(self) -> None:
        if not self._pending_rows:
            return
        stem = self.directory / f"{len(self.sizes):05d}"
        np.save(f"{stem}.indices.npy", np.concatenate([p[0] for p in self._pending], dtype=np.int32))
        if not self.implicit_weights:
            np.save(f"{stem}.weights.npy",
                    np.concatenate([p[1] for p in self._pending], dtype=np.float32))  # type: ignore[misc]
        np.save(f"{stem}.labels.npy", np.concatenate([p[2] for p in self._pending], dtype=np.float32))
        self.sizes.append(self._pending_rows)
        self._pending, self._pending_rows = [], 0

    def finish(self, oov: int = 0, meta: Mapping[str, Any] | None = None) -> Shards:
        self._flush()
        return _write_index(self.directory, self.shape, self.sizes, self.implicit_weights, oov,
                            self.downsampling, meta or {})


def _write_index(directory: Path, shape: tuple[int, int], sizes: list[int], implicit_weights: bool,
                 oov: int, downsampling: Downsampling, meta: Mapping[str, Any]) -> Shards:
    index = {"num_fields": shape[0], "max_entries": shape[1], "sizes": sizes,
             "implicit_weights": implicit_weights, "oov": oov,
             "downsampling": asdict(downsampling), "meta": dict(meta)}
    _write_atomically(directory / INDEX_FILE, json.dumps(index, indent=1))
    return Shards.open(directory)


def concatenate(parts: list[Shards], directory: Path, meta: Mapping[str, Any]) -> Shards:
    """Shard sets written piece by piece (a source's pieces, in order) as one shard set in
    `directory`: their files are moved, not copied, and renumbered."""
    first = parts[0]
    sizes: list[int] = []
    for part in parts:
        for k in range(len(part.sizes)):
            for suffix in SUFFIXES:
                moved = part.directory / f"{k:05d}{suffix}"
                if moved.exists():
                    os.replace(moved, directory / f"{len(sizes):05d}{suffix}")
            sizes.append(part.sizes[k])
    counted = [p.downsampling for p in parts]
    downsampling = Downsampling(
        first.downsampling.negative_keep_rate, first.downsampling.seed,
        sum(d.rows_before for d in counted), sum(d.negatives_before for d in counted),
        sum(d.negatives_after for d in counted))
    return _write_index(directory, first.shape, sizes, first.implicit_weights,
                        sum(p.oov for p in parts), downsampling, meta)


class Batch(NamedTuple):
    indices: torch.Tensor  # (B, F, L) int64
    weights: torch.Tensor  # (B, F, L) float32
    labels: torch.Tensor  # (B,) float32


@dataclass(frozen=True)
class Reading:
    """How one process reads an epoch: its rows, their order and the batch size."""

    batch_size: int
    shuffle: bool = True
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    buffer_rows: int = 1 << 20
    """Rows shuffled together: consecutive shards (in the epoch's shard order) up to this many."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.buffer_rows < 1:
            raise ValueError(
                f"batch_size and buffer_rows must be >= 1, got {self.batch_size}, {self.buffer_rows}"
            )
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world_size})")


class Shards:
    """A shard set opened read-only; shards are memory-mapped when read."""

    def __init__(self, directory: Path, index: Mapping[str, Any]) -> None:
        self.directory = directory
        self.num_fields: int = index["num_fields"]
        self.max_entries: int = index["max_entries"]
        self.sizes: list[int] = list(index["sizes"])
        self.implicit_weights: bool = index["implicit_weights"]
        self.oov: int = index["oov"]
        self.meta: dict[str, Any] = index["meta"]
        # shard sets written before downsampling existed kept every row
        self.downsampling = Downsampling(**index.get("downsampling", {"rows_before": sum(self.sizes)}))
        self.starts = np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)])

    @classmethod
    def open(cls, directory: Path) -> Shards:
        directory = Path(directory)
        path = directory / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{directory} is not a finished shard set ({INDEX_FILE} is missing)")
        return cls(directory, json.loads(path.read_text()))

    def __len__(self) -> int:
        return int(self.starts[-1])

    def shard(self, k: int) -> _Rows:
        """Shard k, memory-mapped (nothing is read until used)."""
        stem = self.directory / f"{k:05d}"
        weights = None if self.implicit_weights else np.load(f"{stem}.weights.npy", mmap_mode="r")
        return _Rows(np.load(f"{stem}.indices.npy", mmap_mode="r"), weights,
                       np.load(f"{stem}.labels.npy", mmap_mode="r"))

    def read(self, start: int, stop: int) -> Dataset:
        """Rows [start, stop) in memory."""
        start, stop = max(start, 0), min(stop, len(self))
        parts = []
        for k in range(int(np.searchsorted(self.starts, start, side="right")) - 1, len(self.sizes)):
            if self.starts[k] >= stop:
                break
            lo, hi = max(start - self.starts[k], 0), min(stop, self.starts[k + 1]) - self.starts[k]
            parts.append(_take(self.shard(k), slice(int(lo), int(hi))))
        return _concat(parts, self.shape).dataset()

    def chunks(self, rows: int) -> Iterator[Dataset]:
        """Every row in order, `rows` at a time."""
        for start in range(0, len(self), rows):
            yield self.read(start, start + rows)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_fields, self.max_entries)

    def steps(self, reading: Reading) -> int:
        """Batches one process reads per epoch: the same on every rank."""
        return sum(-(-rows // reading.batch_size) for _, rows in self._buffers(reading, epoch=0))

    def batches(self, reading: Reading, epoch: int, skip: int = 0) -> Iterator[Batch]:
        """One epoch of batches for `reading.rank`, after skipping the first `skip` batches.

        Rank r reads rows r, r + W, ... of every shard (W processes; the last n mod W rows of
        a shard are left out so that every rank reads as many); the shard order is shuffled
        per epoch and rows are shuffled within buffers of consecutive shards. Skipped batches
        cost nothing to read, so a resumed run starts where it stopped."""
        for b, (shard_ids, rows) in enumerate(self._buffers(reading, epoch)):
            count = -(-rows // reading.batch_size)
            if skip >= count:
                skip -= count
                continue
            data = self._buffer(shard_ids, rows, reading)
            order: np.ndarray | None = None  # rows are gathered batch by batch: one copy in memory
            if reading.shuffle:
                order = np.random.default_rng([reading.seed, epoch, b]).permutation(rows)
            for start in range(skip * reading.batch_size, rows, reading.batch_size):
                chosen = slice(start, start + reading.batch_size)
                yield _take(data, chosen if order is None else order[chosen]).batch()
            skip = 0

    def _buffers(self, reading: Reading, epoch: int) -> Iterator[tuple[list[int], int]]:
        """(shard ids, rows of this rank) for each shuffle buffer of the epoch."""
        order = np.arange(len(self.sizes))
        if reading.shuffle:
            order = np.random.default_rng([reading.seed, epoch]).permutation(len(self.sizes))
        ids: list[int] = []
        rows = 0
        for k in order.tolist():
            mine = self.sizes[k] // reading.world_size
            if ids and rows + mine > reading.buffer_rows:
                yield ids, rows
                ids, rows = [], 0
            if mine:
                ids.append(k)
                rows += mine
        if ids:
            yield ids, rows

    def _buffer(self, shard_ids: list[int], rows: int, reading: Reading) -> _Rows:
        """This rank's rows of the shards, copied from the memory maps into one buffer."""
        implicit = self.implicit_weights
        data = _Rows(np.empty((rows, *self.shape), np.int32),
                     None if implicit else np.empty((rows, *self.shape), np.float32),
                     np.empty(rows, np.float32))
        at = 0
        for k in shard_ids:
            mine = self.sizes[k] // reading.world_size
            mine_rows = slice(reading.rank, mine * reading.world_size, reading.world_size)
            for target, source in zip(data, self.shard(k), strict=True):
                if target is not None and source is not None:
                    target[at : at + mine] = source[mine_rows]
            at += mine
        return data


class _Rows(NamedTuple):
    """Rows as stored: memory-mapped or copied; no weights when they are implicit (1 where
    the index is not padding), so that a shuffle buffer holds the indices alone."""

    indices: np.ndarray
    weights: np.ndarray | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def full_weights(self) -> np.ndarray:
        if self.weights is None:
            return (self.indices != PADDING_INDEX).astype(np.float32)
        return self.weights

    def dataset(self) -> Dataset:
        return Dataset(self.indices, self.full_weights(), self.labels)

    def batch(self) -> Batch:
        import torch

        return Batch(torch.from_numpy(self.indices.astype(np.int64)),
                     torch.from_numpy(self.full_weights()), torch.from_numpy(self.labels))


def _take(data: _Rows, rows: slice | np.ndarray) -> _Rows:
    """The rows, copied into memory (and so writable, as torch wants)."""
    weights = None if data.weights is None else np.array(data.weights[rows])
    return _Rows(np.array(data.indices[rows]), weights, np.array(data.labels[rows]))


def _concat(parts: list[_Rows], shape: tuple[int, int]) -> _Rows:
    if not parts:
        return _Rows(np.zeros((0, *shape), np.int32), np.zeros((0, *shape), np.float32),
                     np.zeros(0, np.float32))
    if len(parts) == 1:
        return parts[0]
    weights = None if parts[0].weights is None else np.concatenate([p.full_weights() for p in parts])
    return _Rows(np.concatenate([p.indices for p in parts]), weights,
                 np.concatenate([p.labels for p in parts]))


def key_digest(key: Mapping[str, Any]) -> str:
    """The name of `key`'s directory in the data cache."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cached(root: Path, key: Mapping[str, Any], build: Callable[[Path], None]) -> Path:
    """The directory for `key` under `root`, built by `build(tmp)` and renamed into place once.

    Concurrent builders of one key (e.g. several ranks) race harmlessly: the first rename wins
    and the others discard their copy."""
    target = Path(root) / key_digest(key)

    def build_with_key(directory: Path) -> None:
        build(directory)
        (directory / "key.json").write_text(json.dumps(key, sort_keys=True, indent=1, default=str))

    once(target, build_with_key)
    return target


def once(target: Path, build: Callable[[Path], None]) -> None:
    """`build(tmp)`, then `tmp` renamed to `target`, unless `target` is already there (a
    finished directory is never partly written)."""
    if target.is_dir():
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_dataset(directory: Path, data: Dataset, rows_per_shard: int = 1 << 19, *,
                  keep_negatives: float = 1.0, seed: int = 0) -> Shards:
    """An in-memory dataset (libFM, tabular, synthetic) as a shard set."""
    writer = ShardWriter(directory, data.indices.shape[1], data.indices.shape[2],
                         rows_per_shard=rows_per_shard, keep_negatives=keep_negatives, seed=seed)
    writer.append(data.indices, data.weights, data.labels)
    return writer.finish(oov=data.oov)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
