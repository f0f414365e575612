"""Pass 2: normalised Arrow record batches -> (indices, weights, labels), vectorised.

Produces exactly what `FeatureSpace.encode` produces for the same rows given as instances
({"I3": 19.0, "C1": "68fd1e64", "tags": ["a", "b"]}, a null left out), which tests check,
so the model sees in training what the service will give it. Work is per column per block:
each categorical block (a multi-valued field's values, flattened) is dictionary-encoded,
only its distinct values are looked up in the vocabulary (a hash table built once per
field) and hashed when out of vocabulary. A multi-valued row with more values than its
field's `max_entries` keeps the first ones (the service refuses such an instance).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from model.features import FLOAT32_MAX, PADDING_INDEX, FeatureSpace, FieldKind
from model.manifest import Task
from training.data import Dataset, binary_labels
from training.stream import LABEL

log = logging.getLogger(__name__)


@dataclass
class Block:
    indices: np.ndarray  # (n, F, L) int32
    weights: np.ndarray | None  # (n, F, L) float32; None when implicit (1 where index != 0)
    labels: np.ndarray  # (n,) float32
    oov: int  # values out of the vocabulary (hashed ones included)


def implicit_weights(space: FeatureSpace) -> bool:
    """Whether every entry's weight is 1 where its index is not padding: no numeric field,
    no mean-pooled multi-valued one."""
    return all(f.kind in (FieldKind.CATEGORICAL, FieldKind.BUCKETIZED)
               or (f.kind == FieldKind.MULTI and f.pooling == "sum") for f in space.fields)


class Encoder:
    """Encodes normalised blocks (`training.stream`) with a fixed feature space."""

    def __init__(self, space: FeatureSpace, task: Task) -> None:
        self.space, self.task = space, task
        self.implicit = implicit_weights(space)
        self._vocab = [pd.Index(f.vocabulary, dtype=object)
                       if f.kind in (FieldKind.CATEGORICAL, FieldKind.MULTI) else None
                       for f in space.fields]
        self._edges = [np.asarray(f.boundaries, np.float64) for f in space.fields]
        self._truncated = False

    def encode(self, batch: pa.RecordBatch) -> Block:
        n, shape = batch.num_rows, (batch.num_rows, self.space.num_fields, self.space.max_entries)
        make = np.empty if self.space.max_entries == 1 else np.zeros  # entries past a field's own
        indices = make(shape, np.int32)
        weights = None if self.implicit else make(shape, np.float32)
        oov = 0
        for position, spec in enumerate(self.space.fields):
            column = batch.column(spec.name)
            if spec.kind == FieldKind.MULTI:
                index, weight, unknown = self._multi(position, column)
                oov += unknown
            elif spec.kind == FieldKind.CATEGORICAL:
                index, unknown = self._categorical(position, column)
                oov += unknown
                weight = (index != PADDING_INDEX).astype(np.float32)
            else:
                index, weight = self._number(position, column.to_numpy(zero_copy_only=False))
            width = 1 if index.ndim == 1 else index.shape[1]
            indices[:, position, :width] = index.reshape(n, width)
            if weights is not None:
                weights[:, position, :width] = weight.reshape(n, width)
        labels = batch.column(LABEL)
        if labels.null_count:
            raise ValueError("a row has no label")
        return Block(indices, weights, binary_labels(labels.to_numpy(), self.task), oov)

    def _lookup(self, position: int, distinct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(table index, out of vocabulary?) of each distinct value of a block."""
        space, spec = self.space, self.space.fields[position]
        # An object Index as the target: pandas converts a bare array first (~30% slower).
        at = self._vocab[position].get_indexer(pd.Index(distinct, dtype=object))  # type: ignore[union-attr]
        table = np.where(at >= 0, space.oov_index(position) + 1 + at, space.oov_index(position))
        missing = space.missing_index(position)
        if missing is not None:
            table[distinct == ""] = missing  # "" is missing, as in FeatureSpace.encode
        unknown = (at < 0) & (distinct != "") if missing is not None else at < 0
        if spec.hash_buckets:  # a loop over the block's distinct unknown values only
            hashed = [space.hash_index(position, v) for v in distinct[unknown].tolist()]
            table[unknown] = np.asarray(hashed, np.int64)
        return table, unknown

    def _categorical(self, position: int, column: pa.Array) -> tuple[np.ndarray, int]:
        """(table index per row, how many rows hold an out-of-vocabulary value)."""
        encoded = pc.dictionary_encode(column)
        distinct = encoded.dictionary.to_numpy(zero_copy_only=False)  # object strings
        table, unknown = self._lookup(position, distinct)
        missing = self.space.missing_index(position)
        table = np.append(table, PADDING_INDEX if missing is None else missing)  # for nulls
        rows = encoded.indices.fill_null(len(distinct)).to_numpy()
        return table[rows], int(np.count_nonzero(unknown[rows[rows < len(distinct)]]))

    def _multi(self, position: int, column: pa.Array) -> tuple[np.ndarray, np.ndarray, int]:
        """(n, L) indices and weights of a list column, and its out-of-vocabulary values;
        a null or empty list is an empty field (or the field's missing index)."""
        spec, n = self.space.fields[position], len(column)
        lengths = pc.list_value_length(column).fill_null(0).to_numpy().astype(np.int64)
        values = pc.list_flatten(column)  # the values of the non-null lists, row by row
        if values.null_count:
            raise ValueError(f"field {spec.name!r}: a list holds a null value")
        encoded = pc.dictionary_encode(values)
        table, unknown = self._lookup(position, encoded.dictionary.to_numpy(zero_copy_only=False))
        codes = encoded.indices.to_numpy()
        rows = np.repeat(np.arange(n), lengths)
        slot = np.arange(len(codes)) - (np.cumsum(lengths) - lengths)[rows]
        keep = slot < spec.max_entries
        kept = np.minimum(lengths, spec.max_entries)
        if not self._truncated and (lengths > spec.max_entries).any():
            self._truncated = True
            log.warning("field %r: rows with more than %d values keep their first %d", spec.name,
                        spec.max_entries, spec.max_entries)
        per_row = (1.0 / np.maximum(kept, 1) if spec.pooling == "mean" else np.ones(n)).astype(np.float32)
        index = np.zeros((n, spec.max_entries), np.int64)
        weight = np.zeros((n, spec.max_entries), np.float32)
        index[rows[keep], slot[keep]] = table[codes[keep]]
        weight[rows[keep], slot[keep]] = per_row[rows[keep]]
        missing = self.space.missing_index(position)
        if missing is not None:
            index[kept == 0, 0], weight[kept == 0, 0] = missing, 1.0
        return index, weight, int(np.count_nonzero(unknown[codes[keep]]))

    def _number(self, position: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index, weight) per row of a number column (NaN where missing)."""
        space, spec = self.space, self.space.fields[position]
        present = ~np.isnan(values)
        missing = space.missing_index(position)
        absent = (PADDING_INDEX, 0.0) if missing is None else (missing, 1.0)
        if spec.kind == FieldKind.NUMERIC:
            index = np.full(len(values), space.oov_index(position))
            scaled = (values - spec.center) / spec.scale
            if np.any(np.abs(scaled[present]) > FLOAT32_MAX):
                raise ValueError(f"field {spec.name!r} holds a number too large for the model: "
                                 "|(value - center) / scale| > float32 max")
            weight = scaled.astype(np.float32)
        else:  # bisect_right, as FeatureSpace.encode buckets a number
            bucket = np.searchsorted(self._edges[position], values, side="right")
            index, weight = space.oov_index(position) + 1 + bucket, np.ones(len(values), np.float32)
        return np.where(present, index, absent[0]), np.where(present, weight, absent[1])


def datasets(blocks: Iterable[pa.RecordBatch], encoder: Encoder) -> Iterator[Dataset]:
    """Encoded blocks as in-memory datasets (int64 indices, explicit weights: the model's
    input types), e.g. for evaluation."""
    for batch in blocks:
        block = encoder.encode(batch)
        weights = block.weights if block.weights is not None else (
            block.indices != PADDING_INDEX).astype(np.float32)
        yield Dataset(block.indices.astype(np.int64), weights, block.labels, block.oov)
