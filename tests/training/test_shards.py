"""Shard sets: what is written reads back, and batches split rows across ranks and epochs."""

from pathlib import Path

import numpy as np
import pytest

from training.data import Dataset
from training.shards import Reading, Shards, ShardWriter, cached, write_dataset


def _rows(n: int, fields: int = 3, entries: int = 2, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, 50, size=(n, fields, entries))
    weights = rng.random((n, fields, entries)).astype(np.float32) * (indices != 0)
    return Dataset(indices, weights, np.arange(n, dtype=np.float32))


def test_rows_read_back_across_shard_boundaries(tmp_path: Path) -> None:
    data = _rows(1000)
    shards = write_dataset(tmp_path / "s", data, rows_per_shard=128)
    assert len(shards) == 1000 and shards.sizes == [128] * 7 + [104]
    part = shards.read(100, 700)
    np.testing.assert_array_equal(part.indices, data.indices[100:700])
    np.testing.assert_array_equal(part.weights, data.weights[100:700])
    assert part.indices.dtype == np.int32
    chunks = list(shards.chunks(300))
    np.testing.assert_array_equal(np.concatenate([c.labels for c in chunks]), data.labels)


def test_implicit_weights_are_one_where_the_index_is_not_padding(tmp_path: Path) -> None:
    data = _rows(50)
    writer = ShardWriter(tmp_path / "s", 3, 2, rows_per_shard=16, implicit_weights=True)
    writer.append(data.indices, None, data.labels)
    shards = writer.finish(oov=7, meta={"source": "test"})
    assert not list((tmp_path / "s").glob("*.weights.npy"))
    again = Shards.open(tmp_path / "s")
    assert (again.oov, again.meta) == (7, {"source": "test"})
    np.testing.assert_array_equal(shards.read(0, 50).weights, (data.indices != 0).astype(np.float32))
    with pytest.raises(ValueError, match="implicit"):
        writer.append(data.indices, data.weights, data.labels)


def test_an_unfinished_shard_set_is_refused(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path / "s", 3, 2)
    data = _rows(10)
    writer.append(data.indices, data.weights, data.labels)
    with pytest.raises(FileNotFoundError, match="index.json"):
        Shards.open(tmp_path / "s")


def test_an_epoch_reads_every_row_once_in_a_new_order_each_epoch(tmp_path: Path) -> None:
    shards = write_dataset(tmp_path / "s", _rows(1000), rows_per_shard=100)
    reading = Reading(batch_size=64, seed=3, buffer_rows=250)
    epochs = [np.concatenate([b.labels.numpy() for b in shards.batches(reading, e)]) for e in (1, 2)]
    for seen in epochs:
        assert sorted(seen.tolist()) == list(range(1000))
    assert not np.array_equal(epochs[0], epochs[1])
    again = np.concatenate([b.labels.numpy() for b in shards.batches(reading, 1)])
    np.testing.assert_array_equal(again, epochs[0])
    assert sum(1 for _ in shards.batches(reading, 1)) == shards.steps(reading)


def test_ranks_read_disjoint_rows_in_equal_steps(tmp_path: Path) -> None:
    shards = write_dataset(tmp_path / "s", _rows(1001), rows_per_shard=99)
    seen = []
    for rank in range(3):
        reading = Reading(batch_size=32, seed=1, rank=rank, world_size=3, buffer_rows=300)
        labels = [b.labels.numpy() for b in shards.batches(reading, 5)]
        assert len(labels) == shards.steps(reading)
        seen.append(set(np.concatenate(labels).tolist()))
    assert len({shards.steps(Reading(32, rank=r, world_size=3, buffer_rows=300)) for r in range(3)}) == 1
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert len(seen[0] | seen[1] | seen[2]) >= 1001 - 3 * 11  # at most W - 1 rows left out per shard


def test_skipping_batches_resumes_the_same_stream(tmp_path: Path) -> None:
    shards = write_dataset(tmp_path / "s", _rows(700), rows_per_shard=100)
    reading = Reading(batch_size=48, seed=9, buffer_rows=200)
    full = [b.labels.numpy() for b in shards.batches(reading, 4)]
    for skip in (0, 1, 5, len(full) - 1, len(full)):
        rest = [b.labels.numpy() for b in shards.batches(reading, 4, skip=skip)]
        assert len(rest) == len(full) - skip
        for a, b in zip(rest, full[skip:], strict=True):
            np.testing.assert_array_equal(a, b)


def test_cached_builds_once_per_key(tmp_path: Path) -> None:
    calls = []

    def build(directory: Path) -> None:
        calls.append(directory)
        write_dataset(directory / "train", _rows(10))

    first = cached(tmp_path, {"file": "a", "size": 1}, build)
    assert cached(tmp_path, {"size": 1, "file": "a"}, build) == first
    other = cached(tmp_path, {"file": "a", "size": 2}, build)
    assert other != first and len(calls) == 2
    assert len(Shards.open(first / "train")) == 10
    assert not list(tmp_path.glob(".*.tmp"))
