"""`vocabulary.arrow`: the bundle's vocabularies, memory-mapped and shared by every worker.

An Arrow IPC file with one record batch per field, in the manifest's field order, each of
the field's n values in table order (`value`, string) and a hash index over them (two
int32 columns of n rows): `order` holds the positions sorted by bucket
`crc32(utf-8 value) % n`, and `end[b]` is where bucket b's positions end in `order` (it
starts at `end[b - 1]`, or 0). A lookup hashes the value once and compares the bytes of the
one or two positions in its bucket, straight from the mapped file; nothing is parsed into
the process heap, so N workers share the pages instead of holding N copies.

Vocabularies of at most `MAPPED_FROM` values are read into a Python list (and the feature
space's dict) as before: a dict lookup is the faster one, and their memory is small.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np
import pyarrow as pa

VOCABULARY_FILE = "vocabulary.arrow"
MAPPED_FROM = 65_536  # larger vocabularies are looked up in the mapped file
_SCHEMA = pa.schema([("value", pa.large_string()), ("order", pa.int32()), ("end", pa.int32())])


class VocabularyFileError(ValueError):
    """The vocabulary file does not match the manifest; the message says how."""


class MappedVocabulary(Sequence[str]):
    """A field's values in table order, read from the mapped file on demand."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        values, order, end = batch.columns
        if values.offset or order.offset or end.offset or values.null_count:
            raise VocabularyFileError("vocabulary columns must be unsliced and hold no null")
        self._size = len(values)
        self._offsets = memoryview(values.buffers()[1]).cast("q")  # (n + 1,) byte offsets
        data = values.buffers()[2]
        self._data = memoryview(data) if data is not None else memoryview(b"")
        self._order = memoryview(order.buffers()[1]).cast("i")
        self._end = memoryview(end.buffers()[1]).cast("i")
        self._batch = batch  # keeps the mapped buffers alive

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, k: int) -> str: ...
    @overload
    def __getitem__(self, k: slice) -> list[str]: ...
    def __getitem__(self, k: int | slice) -> str | list[str]:
        if isinstance(k, slice):
            return [self._value(i) for i in range(*k.indices(self._size))]
        if not -self._size <= k < self._size:
            raise IndexError(f"vocabulary position {k} out of range for {self._size} values")
        return self._value(k % self._size)

    def __iter__(self) -> Iterator[str]:
        return (self._value(i) for i in range(self._size))

    @property
    def arrow(self) -> pa.LargeStringArray:
        """The values as the mapped Arrow array (no copy)."""
        return self._batch.column(0)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.position(value) is not None

    def _value(self, k: int) -> str:
        return self._data[self._offsets[k]:self._offsets[k + 1]].tobytes().decode("utf-8")

    def position(self, value: str) -> int | None:
        """The value's position in the vocabulary, or None."""
        if not self._size:
            return None
        key = value.encode("utf-8")
        bucket = zlib.crc32(key) % self._size
        offsets, data, order = self._offsets, self._data, self._order
        for i in range(self._end[bucket - 1] if bucket else 0, self._end[bucket]):
            k = order[i]
            if data[offsets[k]:offsets[k + 1]] == key:
                return k
        return None


def write_vocabularies(path: Path, vocabularies: Sequence[Sequence[str]]) -> None:
    """One record batch per field (empty for fields without a vocabulary), in field order."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, _SCHEMA) as writer:
        for vocabulary in vocabularies:
            writer.write_batch(_batch(vocabulary))


def _batch(vocabulary: Sequence[str]) -> pa.RecordBatch:
    values = pa.array(vocabulary, pa.large_string())
    size = len(values)
    buckets = np.array([zlib.crc32(v.encode("utf-8")) for v in vocabulary], dtype=np.int64)
    if size:
        buckets %= size
    order = np.argsort(buckets, kind="stable").astype(np.int32)
    end = np.cumsum(np.bincount(buckets, minlength=size)).astype(np.int32)
    return pa.record_batch([values, pa.array(order), pa.array(end)], schema=_SCHEMA)


def read_vocabularies(path: Path, sizes: Sequence[int]) -> list[Sequence[str]]:
    """Each field's vocabulary: a list when small, a `MappedVocabulary` above MAPPED_FROM.
    `sizes` (from the manifest) must match the file's batches."""
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
    except (OSError, pa.ArrowInvalid) as e:
        raise VocabularyFileError(f"unreadable {path.name}: {e}") from e
    if not reader.schema.equals(_SCHEMA) or reader.num_record_batches != len(sizes):
        raise VocabularyFileError(f"{path.name} holds {reader.num_record_batches} vocabularies "
                                  f"for {len(sizes)} fields, or not the expected columns")
    vocabularies: list[Sequence[str]] = []
    for position, size in enumerate(sizes):
        batch = reader.get_batch(position)
        if batch.num_rows != size:
            raise VocabularyFileError(f"{path.name}: field {position} holds {batch.num_rows} "
                                      f"values, the manifest says {size}")
        vocabularies.append(MappedVocabulary(batch) if size > MAPPED_FROM
                            else batch.column(0).to_pylist())
    return vocabularies
