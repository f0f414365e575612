"""Pass 2: Arrow record batches of raw columns -> (indices, weights, labels), vectorised.

Produces exactly what `FeatureSpace.encode` produces for the same rows given as instances
({"I3": 19.0, "C1": "68fd1e64"}, an empty column left out), which tests check, so the model
sees in training what the service will give it. Work is per column per block: each
categorical block is dictionary-encoded, only its distinct values are looked up in the
vocabulary (a hash table built once per field) and hashed when out of vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from model.features import PADDING_INDEX, FeatureSpace, FieldKind
from model.manifest import Task
from training.data import Dataset, binary_labels


@dataclass
class Block:
    indices: np.ndarray  # (n, F, 1) int32
    weights: np.ndarray | None  # (n, F, 1) float32; None when implicit (1 where index != 0)
    labels: np.ndarray  # (n,) float32
    oov: int  # values out of the vocabulary (hashed ones included)


class Encoder:
    """Encodes blocks of one Criteo-format file with a fixed feature space."""

    def __init__(self, space: FeatureSpace, task: Task) -> None:
        if space.max_entries != 1:
            raise ValueError("Criteo fields hold one value each")
        self.space, self.task = space, task
        self.implicit = all(f.kind != FieldKind.NUMERIC for f in space.fields)
        self._vocab = [pd.Index(f.vocabulary, dtype=object) if f.kind == FieldKind.CATEGORICAL
                       else None for f in space.fields]
        self._edges = [np.asarray(f.boundaries, np.float64) for f in space.fields]

    def encode(self, batch: pa.RecordBatch) -> Block:
        n = batch.num_rows
        indices = np.empty((n, self.space.num_fields, 1), np.int32)
        weights = None if self.implicit else np.empty((n, self.space.num_fields, 1), np.float32)
        oov = 0
        for position, spec in enumerate(self.space.fields):
            column = batch.column(spec.name)
            if spec.kind == FieldKind.CATEGORICAL:
                index, unknown = self._categorical(position, column)
                oov += unknown
                weight = (index != PADDING_INDEX).astype(np.float32)
            else:
                index, weight = self._number(position, column.to_numpy(zero_copy_only=False))
            indices[:, position, 0] = index
            if weights is not None:
                weights[:, position, 0] = weight
        labels = batch.column("label")
        if labels.null_count:
            raise ValueError("a row has no label")
        return Block(indices, weights, binary_labels(labels.to_numpy(), self.task), oov)

    def _categorical(self, position: int, column: pa.Array) -> tuple[np.ndarray, int]:
        """(table index per row, how many rows hold an out-of-vocabulary value)."""
        space, spec = self.space, self.space.fields[position]
        encoded = pc.dictionary_encode(column)
        distinct = encoded.dictionary.to_numpy(zero_copy_only=False)  # object strings
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
        table = np.append(table, PADDING_INDEX if missing is None else missing)  # for nulls
        rows = encoded.indices.fill_null(len(distinct)).to_numpy()
        return table[rows], int(np.count_nonzero(unknown[rows[rows < len(distinct)]]))

    def _number(self, position: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index, weight) per row of an integer column (NaN where missing)."""
        space, spec = self.space, self.space.fields[position]
        present = ~np.isnan(values)
        missing = space.missing_index(position)
        absent = (PADDING_INDEX, 0.0) if missing is None else (missing, 1.0)
        if spec.kind == FieldKind.NUMERIC:
            index = np.full(len(values), space.oov_index(position))
            weight = ((values - spec.center) / spec.scale).astype(np.float32)
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
