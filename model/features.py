"""The feature space shared by training and serving (torch-free).

Every kind of field becomes the same thing: up to L (index, weight) entries into one
feature table. Categorical: one entry, weight 1. Multi-valued: one entry per value,
weights 1 (sum) or 1/n (mean). Numeric: the field's own index, weight = the normalised
value. Bucketised: a numeric value mapped to a categorical bucket.

Layout of the table: index 0 is padding (weight 0); each categorical, multi-valued or
bucketised field owns an out-of-vocabulary index followed by its vocabulary (or buckets);
a numeric field owns one index. Two options extend a field's block, in this order after it:

- `missing = "learned"`: an absent, null or empty value takes the field's own "missing"
  index (weight 1) instead of leaving the field empty; real logs (Criteo) miss values often
  and the absence itself predicts.
- `hash_buckets = n` (categorical, multi): a value out of the vocabulary takes one of n
  indices chosen by crc32 of its UTF-8 bytes (stable across processes and machines, unlike
  `hash()`), so a new value gets a learned vector; it is still reported as out of vocabulary.
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Any, Literal, Protocol, cast, overload

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.vocabulary import MappedVocabulary

PADDING_INDEX = 0
FLOAT32_MAX = float(np.finfo(np.float32).max)
MISSING_LABEL = "<missing>"
OOV_LABEL = "<oov>"
# Recent values cached per mapped field (a worker's memory: about 170 bytes a value).
MAPPED_CACHE_SIZE = 4096


class FieldKind(StrEnum):
    CATEGORICAL = "categorical"
    MULTI = "multi"
    NUMERIC = "numeric"
    BUCKETIZED = "bucketized"


class FeatureError(ValueError):
    """An instance does not fit the feature space (unknown field, wrong type, ...)."""


class FieldSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: FieldKind
    vocabulary: list[str] = Field(default_factory=list)
    """Known values (categorical, multi); bucket labels are derived for bucketised fields."""
    max_entries: int = Field(default=1, ge=1)
    """L: how many values a multi-valued field may hold."""
    pooling: Literal["mean", "sum"] = "mean"
    """How a multi-valued field combines its values' embeddings."""
    center: float = 0.0
    scale: float = 1.0
    """Numeric fields: weight = (value - center) / scale, fitted on the training data."""
    boundaries: list[float] = Field(default_factory=list)
    """Bucketised fields: sorted bucket edges; bucket k holds boundaries[k-1] <= v < boundaries[k]."""
    missing: Literal["empty", "learned"] = "empty"
    """An absent, null or empty ("") value: no entry (empty), or the field's own index (learned)."""
    hash_buckets: int = Field(default=0, ge=0)
    """Categorical, multi: indices for out-of-vocabulary values, by crc32(value) % hash_buckets."""

    @model_validator(mode="after")
    def _check(self) -> FieldSpec:
        if self.hash_buckets and self.kind not in (FieldKind.CATEGORICAL, FieldKind.MULTI):
            raise ValueError(f"field {self.name!r}: only categorical and multi-valued fields "
                             f"take hash_buckets, not {self.kind}")
        if self.missing == "learned" and "" in self.vocabulary:
            raise ValueError(f"field {self.name!r}: '' means missing, it cannot be a value")
        if self.kind != FieldKind.MULTI and self.max_entries != 1:
            raise ValueError(f"field {self.name!r}: only multi-valued fields take max_entries > 1")
        if self.kind == FieldKind.NUMERIC and (self.scale == 0 or not math.isfinite(self.scale)):
            raise ValueError(f"field {self.name!r}: scale must be finite and non-zero, got {self.scale}")
        if self.kind == FieldKind.BUCKETIZED and self.boundaries != sorted(self.boundaries):
            raise ValueError(f"field {self.name!r}: boundaries must be sorted, got {self.boundaries}")
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError(f"field {self.name!r}: vocabulary has duplicate values")
        return self

    @property
    def known(self) -> Sequence[str]:
        """The values an instance can name: the vocabulary (a list, or a bundle's mapped
        vocabulary file), or bucket labels (bucketised)."""
        if self.kind == FieldKind.BUCKETIZED:
            return bucket_labels(self.boundaries)
        return self.vocabulary

    @property
    def values(self) -> list[str]:
        """Names of the field's indices after its first (OOV, or a numeric field's value):
        the known values, then "<missing>" and "<hash k>" labels when the options add them."""
        extra = [MISSING_LABEL] if self.missing == "learned" else []
        return [*self.known, *extra, *(f"<hash {k}>" for k in range(self.hash_buckets))]

    @property
    def value_count(self) -> int:
        """len(values), without building the list."""
        return len(self.known) + (self.missing == "learned") + self.hash_buckets

    @property
    def table_size(self) -> int:
        return 1 + self.value_count if self.kind != FieldKind.NUMERIC else (
            2 if self.missing == "learned" else 1)

    @property
    def missing_offset(self) -> int | None:
        """The missing index relative to the field's offset, when missing values are learned."""
        if self.missing != "learned":
            return None
        return 1 if self.kind == FieldKind.NUMERIC else 1 + len(self.known)

    @property
    def hash_offset(self) -> int:
        """The first hash bucket relative to the field's offset (when hash_buckets > 0)."""
        return 1 + len(self.known) + (self.missing == "learned")


def bucket_labels(boundaries: Sequence[float]) -> list[str]:
    edges = ["-inf", *(f"{b:g}" for b in boundaries), "inf"]
    return [f"[{lo},{hi})" for lo, hi in zip(edges, edges[1:], strict=False)]


@dataclass
class Encoded:
    """A batch in model input form, plus the values that were out of vocabulary."""

    indices: np.ndarray  # (B, F, L) int64
    weights: np.ndarray  # (B, F, L) float32
    oov: list[tuple[int, str, str]] = field(default_factory=list)  # (row, field, value)


class FeatureSpace:
    """Maps raw instances ({field: value}) to (indices, weights) and back to names."""

    def __init__(self, fields: Sequence[FieldSpec]) -> None:
        if len(fields) < 2:
            raise ValueError(f"a feature space needs at least 2 fields, got {len(fields)}")
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise ValueError(f"field names must be unique, got {names}")
        self.fields = list(fields)
        self.offsets: list[int] = []
        next_index = PADDING_INDEX + 1
        for spec in self.fields:
            self.offsets.append(next_index)
            next_index += spec.table_size
        self.num_features = next_index
        self.max_entries = max(f.max_entries for f in self.fields)
        self._position = {name: i for i, name in enumerate(names)}

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @cached_property
    def pairs(self) -> list[tuple[int, int]]:
        """Field pairs i < j in the model's order (row-major upper triangle)."""
        n = self.num_fields
        return [(i, j) for i in range(n) for j in range(i + 1, n)]

    @cached_property
    def mapped(self) -> bool:
        """Whether a field's vocabulary is a mapped file (large), not a list in the heap."""
        return any(isinstance(spec.known, MappedVocabulary) for spec in self.fields)

    @cached_property
    def _lookup(self) -> list[Lookup]:
        """Value -> index per field; "" names the missing index where missing is learned.
        A dict, or the mapped file's hash index for large vocabularies (no copy in the heap)."""
        lookups: list[Lookup] = []
        for spec, offset in zip(self.fields, self.offsets, strict=True):
            missing = None
            if spec.missing_offset is not None and spec.kind != FieldKind.NUMERIC:
                missing = offset + spec.missing_offset
            if isinstance(spec.known, MappedVocabulary):
                lookups.append(_MappedLookup(spec.known, offset + 1, missing))
                continue
            lookup = {value: offset + 1 + k for k, value in enumerate(spec.known)}
            if missing is not None:
                lookup[""] = missing
            lookups.append(lookup)
        return lookups

    def missing_index(self, position: int) -> int | None:
        """The field's missing index (missing = "learned"), else None (an empty field)."""
        relative = self.fields[position].missing_offset
        return None if relative is None else self.offsets[position] + relative

    def hash_index(self, position: int, value: str) -> int | None:
        """The hash bucket of an out-of-vocabulary value (hash_buckets > 0), else None."""
        spec = self.fields[position]
        if not spec.hash_buckets:
            return None
        return self.offsets[position] + spec.hash_offset + stable_hash(value) % spec.hash_buckets

    @cached_property
    def _template(self) -> tuple[list[int], list[float]]:
        """One encoded row before its values are written: padding, or the missing index of
        fields that learn one (so an absent field encodes as a null one does)."""
        width = self.num_fields * self.max_entries
        indices, weights = [PADDING_INDEX] * width, [0.0] * width
        for position in range(self.num_fields):
            missing = self.missing_index(position)
            if missing is not None:
                indices[position * self.max_entries] = missing
                weights[position * self.max_entries] = 1.0
        return indices, weights

    def oov_index(self, position: int) -> int:
        return self.offsets[position]

    @cached_property
    def value_names(self) -> np.ndarray:
        """(num_features,) objects: the name of every index of a categorical, multi-valued or
        bucketised field ("<oov>", then its `values`); "" for padding and numeric indices.
        A table of every index: use `names` or `name_list`, which a mapped space answers
        without one."""
        names = np.full(self.num_features, "", dtype=object)
        for position, spec in enumerate(self.fields):
            if spec.kind == FieldKind.NUMERIC:
                continue
            offset = self.offsets[position]
            names[offset] = OOV_LABEL
            names[offset + 1 : offset + 1 + len(spec.values)] = spec.values
        return names

    def value_name(self, index: int) -> str:
        """value_names[index], computed from the field's specification."""
        position = bisect.bisect_right(self.offsets, index) - 1
        spec = self.fields[position] if position >= 0 else None
        if spec is None or spec.kind == FieldKind.NUMERIC:
            return ""
        k = index - self.offsets[position] - 1
        known = spec.known
        if k < 0:
            return OOV_LABEL
        if k < len(known):
            return known[k]
        k -= len(known) + (spec.missing == "learned")
        return MISSING_LABEL if k < 0 else f"<hash {k}>"

    def names(self, indices: np.ndarray) -> np.ndarray:
        """value_names[indices] (any shape, objects), without the table in a mapped space."""
        if not self.mapped:
            return cast(np.ndarray, self.value_names[indices])
        names = np.empty(indices.size, dtype=object)
        names[:] = [self.value_name(index) for index in indices.reshape(-1).tolist()]
        return names.reshape(indices.shape)

    def name_list(self) -> Sequence[str]:
        """Index -> name as a sequence: the table as a list, or computed (mapped space)."""
        return _Names(self) if self.mapped else cast(list[str], self.value_names.tolist())

    @cached_property
    def pair_fields(self) -> tuple[np.ndarray, np.ndarray]:
        """(P,) the first and (P,) the second field of every pair, in `pairs` order."""
        return (np.array([i for i, _ in self.pairs], dtype=np.int64),
                np.array([j for _, j in self.pairs], dtype=np.int64))

    def presence(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which fields (B, F) and which field pairs (B, P) encoded instances hold, as the
        model decides it: a field when any of its entries has a non-zero weight, a pair when
        both of its fields do. The model's attention gives every other pair exactly 0."""
        present = cast(np.ndarray, weights.any(axis=-1))  # (B, F); a float is true when non-zero
        first, second = self.pair_fields  # take: cheaper than fancy indexing on small arrays
        return present, present.take(first, axis=1) & present.take(second, axis=1)  # (B, P)

    def index_of(self, position: int, value: str) -> int | None:
        """Table index of a known value of a categorical/multi/bucketised field, else None."""
        return self._lookup[position].get(value)

    @cached_property
    def _slots(self) -> dict[str, _Slot]:
        """Field name -> what encoding one of its values needs, read once per value."""
        width = self.max_entries
        return {
            spec.name: _Slot(
                spec=spec, start=position * width, oov=self.offsets[position],
                lookup=self._lookup[position],
                single=spec.kind == FieldKind.CATEGORICAL,
                hash_base=self.offsets[position] + spec.hash_offset,
            )
            for position, spec in enumerate(self.fields)
        }

    def encode(self, instances: Sequence[Mapping[str, Any]]) -> Encoded:
        """Encode raw instances. An absent, null or empty value is an empty field, or the
        field's missing index where it learns one; an unknown value maps to the field's
        out-of-vocabulary index (or its hash bucket) and is reported, never an error.

        Entries are written to flat Python lists, turned into arrays once: a numpy item
        assignment costs ~10x a list's. A categorical string (the common value) takes an
        inline path; every other value goes through `_encode_value`."""
        width = self.num_fields * self.max_entries
        template_indices, template_weights = self._template
        indices = template_indices * len(instances)
        weights = template_weights * len(instances)
        oov: list[tuple[int, str, str]] = []
        slots = self._slots
        for row, instance in enumerate(instances):
            if type(instance) is not dict and not isinstance(instance, Mapping):  # dict: no ABC check
                raise FeatureError(f"instance {row} must be an object of field: value")
            base = row * width
            for name, value in instance.items():
                slot = slots.get(name)
                if slot is None:
                    raise FeatureError(f"instance {row}: unknown field {name!r}")
                if slot.single and type(value) is str:
                    at = base + slot.start
                    index = slot.lookup.get(value)
                    if index is None:
                        index = slot.unknown(value)
                        oov.append((row, name, value))
                    indices[at], weights[at] = index, 1.0
                elif value is not None:
                    _encode_value(slot, value, row, base + slot.start, (indices, weights, oov))
        shape = (len(instances), self.num_fields, self.max_entries)
        return Encoded(np.array(indices, dtype=np.int64).reshape(shape),
                       np.array(weights, dtype=np.float32).reshape(shape), oov)

    def describe(self, position: int, indices: np.ndarray, weights: np.ndarray) -> str | list[str]:
        """The human-readable value(s) of one field of one encoded instance."""
        spec = self.fields[position]
        if spec.kind == FieldKind.NUMERIC:
            if weights[0] and int(indices[0]) == self.missing_index(position):
                return MISSING_LABEL
            return f"{float(weights[0]) * spec.scale + spec.center:g}" if weights[0] else ""
        table = self.name_list() if self.mapped else self.value_names
        names = [table[int(index)] for index, weight in zip(indices, weights, strict=True)
                 if weight != 0]
        return names if spec.kind == FieldKind.MULTI else (names[0] if names else "")


class Lookup(Protocol):
    def get(self, value: str, /) -> int | None: ...


class _MappedLookup:
    """A large vocabulary's value -> table index, through the mapped file's hash index,
    behind an LRU cache of the field's recent values: a hit is a dict lookup in C instead
    of crc32 and byte compares in Python, and the cache holds at most MAPPED_CACHE_SIZE
    values (unknown values too: they also cost a look in the index)."""

    __slots__ = ("get",)

    def __init__(self, vocabulary: MappedVocabulary, base: int, missing: int | None) -> None:
        def find(value: str, /) -> int | None:
            position = vocabulary.position(value)
            if position is not None:
                return base + position
            return missing if value == "" else None

        self.get: Callable[[str], int | None] = lru_cache(MAPPED_CACHE_SIZE)(find)


class _Names(Sequence[str]):
    def __init__(self, space: FeatureSpace) -> None:
        self._space = space

    def __len__(self) -> int:
        return self._space.num_features

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self._space.value_name(i) for i in range(*index.indices(len(self)))]
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} features")
        return self._space.value_name(index)


@dataclass(frozen=True, slots=True)
class _Slot:
    spec: FieldSpec
    start: int  # offset of the field's first entry within an encoded row
    oov: int
    lookup: Lookup
    single: bool  # categorical: exactly one entry
    hash_base: int  # the first hash bucket (used when spec.hash_buckets > 0)

    def unknown(self, value: str) -> int:
        """The index of an out-of-vocabulary value: its hash bucket, or the OOV index."""
        buckets = self.spec.hash_buckets
        return self.hash_base + stable_hash(value) % buckets if buckets else self.oov


def stable_hash(value: str) -> int:
    """crc32 of the UTF-8 bytes: the same in every process (Python's hash() is salted)."""
    return zlib.crc32(value.encode("utf-8"))


Out = tuple[list[int], list[float], list[tuple[int, str, str]]]


def _encode_value(slot: _Slot, value: Any, row: int, at: int, out: Out) -> None:
    """Any value but a categorical string: entries from `at` on, in the flat lists `out`."""
    spec, (indices, weights, oov) = slot.spec, out
    if value == "" and spec.missing == "learned":
        return  # the row's template already holds the missing index
    if spec.kind == FieldKind.NUMERIC:
        weight = (_number(spec.name, value) - spec.center) / spec.scale
        if abs(weight) > FLOAT32_MAX:
            raise FeatureError(f"instance {row}: field {spec.name!r} holds a number too large "
                               f"for the model: |(value - center) / scale| > float32 max")
        indices[at], weights[at] = slot.oov, weight
        return
    if spec.kind == FieldKind.BUCKETIZED:  # bucket k is the k-th value after the OOV index
        bucket = bisect.bisect_right(spec.boundaries, _number(spec.name, value))
        indices[at], weights[at] = slot.oov + 1 + bucket, 1.0
        return
    tokens = _tokens(spec, value)
    weight = 1.0 / len(tokens) if tokens and spec.pooling == "mean" else 1.0
    for token in tokens:
        index = slot.lookup.get(token)
        if index is None:
            index = slot.unknown(token)
            oov.append((row, spec.name, token))
        indices[at], weights[at] = index, weight
        at += 1


def _tokens(spec: FieldSpec, value: Any) -> list[str]:
    if spec.kind != FieldKind.MULTI:
        return [_token(spec.name, value)]
    values = value if isinstance(value, list) else [value]
    if len(values) > spec.max_entries:
        raise FeatureError(
            f"field {spec.name!r} holds at most {spec.max_entries} values, got {len(values)}"
        )
    return [_token(spec.name, v) for v in values]


def _token(field_name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FeatureError(
            f"field {field_name!r} takes a string or an integer, got {type(value).__name__}"
        )
    return str(value)


def _number(field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FeatureError(f"field {field_name!r} takes a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise FeatureError(f"field {field_name!r} takes a finite number, got {value}")
    return number
