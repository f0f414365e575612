"""The impression log's `features` and `oov` columns built from what the service scored, a
column at a time in Arrow (torch-free; the semantics are `model.impressions`').

A categorical field's values are read from its encoding: the known value by its index into
the vocabulary (Arrow's take, no Python object a row), the out-of-vocabulary ones from
`Encoded.oov`, which holds them as given. Other fields of field values are converted from
the instances (`values_column`); raw tensors (the Open Inference Protocol) are read back
through the vocabularies as docs/IMPRESSIONS.md says. tests/model/test_impression_columns.py
keeps the first equal to `features_array`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model.features import PADDING_INDEX, Encoded, FeatureSpace, FieldKind
from model.impressions import features_type, values_column
from model.vocabulary import MappedVocabulary


class FeatureColumns:
    """For one model: its vocabularies as Arrow arrays, made once."""

    def __init__(self, space: FeatureSpace) -> None:
        self._space = space
        self._type = features_type(space.fields)
        self._known = [spec.known.arrow if isinstance(spec.known, MappedVocabulary)
                       else pa.array(spec.known, pa.string()) for spec in space.fields]

    def of_instances(self, encoded: Encoded,
                     instances: Sequence[Mapping[str, Any]]) -> pa.StructArray:
        """`features_array(fields, instances)` of instances and their encoding."""
        oov: dict[str, tuple[list[int], list[str]]] = {}
        for row, field, value in encoded.oov:
            rows, values = oov.setdefault(field, ([], []))
            rows.append(row)
            values.append(value)
        columns = []
        for position, spec in enumerate(self._space.fields):
            if spec.kind == FieldKind.CATEGORICAL:
                column = self._categorical(position, encoded, oov.get(spec.name))
            else:
                column = values_column(spec, [instance.get(spec.name) for instance in instances])
            columns.append(column)
        return pa.StructArray.from_arrays(columns, fields=list(self._type))

    def _categorical(self, position: int, encoded: Encoded,
                     oov: tuple[list[int], list[str]] | None) -> pa.Array:
        """Known values by index, unknown ones as given, missing as null."""
        column = self._known_values(position, encoded.indices[:, position, 0],
                                    encoded.weights[:, position, 0] != 0)
        if oov is None:
            return column
        rows, values = oov
        mask = np.zeros(len(column), dtype=bool)
        mask[rows] = True
        return pc.replace_with_mask(column, pa.array(mask), pa.array(values, pa.string()))

    def _known_values(self, position: int, indices: np.ndarray, held: np.ndarray) -> pa.Array:
        """(B,) the known value each index names, null where it names none."""
        known = self._known[position]
        rank = indices - self._space.offsets[position] - 1
        valid = held & (rank >= 0) & (rank < len(known))
        return _take(known, pa.array(np.where(valid, rank, 0), mask=~valid))

    def of_tensors(self, indices: np.ndarray,
                   weights: np.ndarray) -> tuple[pa.StructArray, list[list[str]]]:
        """The `features` and `oov` columns of raw tensors (B, F, L): each field's entries
        read back through the vocabularies; an entry naming no value of its field (the
        out-of-vocabulary index, a hash bucket, another field's index) is left out and its
        field named in `oov` (docs/IMPRESSIONS.md)."""
        unknown = np.zeros(indices.shape[:2], dtype=bool)  # (B, F)
        columns = []
        for position in range(self._space.num_fields):
            column, unknown[:, position] = self._tensor_column(
                position, indices[:, position], weights[:, position])
            columns.append(column)
        names = self._space.field_names
        oov: list[list[str]] = [[] for _ in range(len(indices))]
        for row, position in zip(*np.nonzero(unknown), strict=True):
            oov[row].append(names[position])
        return pa.StructArray.from_arrays(columns, fields=list(self._type)), oov

    def _tensor_column(self, position: int, indices: np.ndarray,
                       weights: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        """One field's (B,) values and (B,) whether an entry named no value, from (B, L) entries."""
        space = self._space
        spec, offset = space.fields[position], space.offsets[position]
        held = weights != 0  # (B, L)
        missing = (indices == PADDING_INDEX) | (indices == (space.missing_index(position)
                                                            or PADDING_INDEX))
        if spec.kind == FieldKind.NUMERIC:  # a value equal to the center has weight 0
            value = indices[:, 0] == offset
            numbers = weights[:, 0].astype(np.float64) * spec.scale + spec.center
            return pa.array(numbers, pa.float64(), mask=~value), ~value & ~missing[:, 0] & held[:, 0]
        rank = indices - offset - 1  # (B, L): the position of a known value in spec.known
        known = held & (rank >= 0) & (rank < len(spec.known))
        unknown = (held & ~known & ~missing).any(axis=1)
        if spec.kind == FieldKind.MULTI:
            counts = known.sum(axis=1)
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
            values = _take(self._known[position], pa.array(rank[known]))
            return pa.ListArray.from_arrays(offsets, values, mask=pa.array(counts == 0)), unknown
        if spec.kind == FieldKind.BUCKETIZED:  # each bucket's lower edge; the first's upper edge - 1
            edges = spec.boundaries
            lows = np.array([edges[0] - 1 if edges else 0.0, *edges], dtype=np.float64)
            return pa.array(lows[np.where(known[:, 0], rank[:, 0], 0)], pa.float64(),
                            mask=~known[:, 0]), unknown
        return self._known_values(position, indices[:, 0], held[:, 0]), unknown


def _take(values: pa.Array, indices: pa.Array) -> pa.Array:
    """pc.take as strings: a mapped vocabulary is a large_string array (cast what was taken)."""
    taken = pc.take(values, indices)
    return taken.cast(pa.string()) if taken.type == pa.large_string() else taken
