"""The feature space of a Criteo-format log, from pass 1's counts; and its growth on a new day.

Integer columns become bucketised fields whose edges reproduce the Kaggle winners' transform
(x itself for x <= 2, floor(ln(x)^2) above), trimmed to the range seen in training, or numeric
fields standardised on the training data. Categorical columns keep the values seen at least
`min_count` times, most frequent first (ties by value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model.features import FeatureSpace, FieldKind, FieldSpec
from training.config import CriteoOptions
from training.criteo.reader import CATEGORICALS, INTEGERS
from training.stream.counts import Counts, Moments
from training.stream.fit import vocabulary

# floor(ln(x)^2) = k  <=>  exp(sqrt(k)) <= x < exp(sqrt(k + 1)); ln(3)^2 = 1.2, so from x = 3 the
# buckets are k = 1, 2, ...; below, each integer is its own bucket (and [-inf, -2) gathers the rest).
# k = 480 reaches 3.3e9, past any 32-bit count.
LOG_EDGES = [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0] + [math.exp(math.sqrt(k)) for k in range(2, 481)]


def log_boundaries(low: float, high: float) -> list[float]:
    """The edges that split [low, high]: every bucket holds some of the range, the first
    and last reach to -inf and inf (so unseen extremes share the nearest trained bucket)."""
    return [e for e in LOG_EDGES if low < e <= high]


def integer_field(name: str, stats: Moments, options: CriteoOptions) -> FieldSpec:
    if options.integers == "numeric":
        scale = stats.std if stats.std > 0 else 1.0
        return FieldSpec(name=name, kind=FieldKind.NUMERIC, center=stats.mean, scale=scale,
                         missing=options.missing)
    edges = log_boundaries(stats.minimum, stats.maximum) if stats.count else []
    return FieldSpec(name=name, kind=FieldKind.BUCKETIZED, boundaries=edges, missing=options.missing)


def categorical_field(name: str, vocab: list[str], options: CriteoOptions) -> FieldSpec:
    return FieldSpec(name=name, kind=FieldKind.CATEGORICAL, vocabulary=vocab,
                     missing=options.missing, hash_buckets=options.hash_buckets)


def feature_space(counts: Counts, options: CriteoOptions, min_count: int) -> FeatureSpace:
    integers = [integer_field(name, counts.numbers[name], options) for name in INTEGERS]
    categoricals = [categorical_field(name, vocabulary(counts.values[name], min_count), options)
                    for name in CATEGORICALS]
    return FeatureSpace(integers + categoricals)


@dataclass
class Grown:
    space: FeatureSpace
    mapping: np.ndarray
    """(previous.num_features,) int64: the new index of every old index, -1 where the value
    was dropped; copy old embedding rows `old[i]` to `new[mapping[i]]` where mapping[i] >= 0."""


def grow(previous: FeatureSpace, counts: Counts, options: CriteoOptions, min_count: int,
         keep_dropped: bool = False) -> Grown:
    """A new day's feature space that keeps the previous one's values where it can.

    Categorical: the old values still seen `min_count` times (all of them with
    `keep_dropped`) in their old order, then the new values, most frequent first. Bucketised:
    the old and new ranges together, so every old bucket's lower edge survives. Numeric: the
    old normalisation. OOV, missing and hash-bucket indices map to their counterparts."""
    if previous.field_names != INTEGERS + CATEGORICALS:
        raise ValueError(f"the previous model's fields {previous.field_names[:3]}... are not Criteo's")
    grown = [_grow_field(old, counts, options, min_count, keep_dropped) for old in previous.fields]
    space = FeatureSpace([spec for spec, _ in grown])
    mapping = np.full(previous.num_features, -1, dtype=np.int64)
    mapping[0] = 0
    for position, (_, moved) in enumerate(grown):
        _map_field(mapping, previous, space, position, moved)
    return Grown(space, mapping)


def _grow_field(old: FieldSpec, counts: Counts, options: CriteoOptions, min_count: int,
                keep_dropped: bool) -> tuple[FieldSpec, np.ndarray]:
    """The field's new spec and, per old known value, its new known position (-1: dropped)."""
    if old.kind == FieldKind.NUMERIC:
        return old, np.zeros(0, np.int64)
    if old.kind == FieldKind.BUCKETIZED:
        stats, first, last = counts.numbers[old.name], old.boundaries[:1], old.boundaries[-1:]
        edges = [e for e in LOG_EDGES if (e > stats.minimum or first and e >= first[0])
                 and (e <= stats.maximum or last and e <= last[0])]
        spec = FieldSpec(**{**old.model_dump(), "boundaries": edges})
        lower = {e: k for k, e in enumerate([-math.inf, *edges])}
        return spec, np.array([lower.get(e, -1) for e in [-math.inf, *old.boundaries]], np.int64)
    table = counts.values[old.name]
    previous = pa.array(old.vocabulary, pa.string())
    at = pc.index_in(previous, value_set=table.column("values"))
    seen = pc.take(table.column("counts"), at.fill_null(0)).to_numpy(zero_copy_only=False)
    seen = np.where(at.is_valid().to_numpy(zero_copy_only=False), seen, 0)
    keep = np.ones(len(seen), bool) if keep_dropped else seen >= min_count
    moved = np.where(keep, np.cumsum(keep) - 1, -1)
    vocab = previous.filter(pa.array(keep)).to_pylist() + _fresh(table, previous, min_count)
    spec = FieldSpec(**{**old.model_dump(), "vocabulary": vocab, "hash_buckets": options.hash_buckets})
    return spec, moved


def _fresh(table: pa.Table, previous: pa.Array, min_count: int) -> list[str]:
    """Values of `table` kept by min_count that `previous` does not hold, in vocabulary order."""
    new = table.filter(pc.invert(pc.is_in(table.column("values"), value_set=previous)))
    return vocabulary(new, min_count)


def _map_field(mapping: np.ndarray, old: FeatureSpace, new: FeatureSpace, position: int,
               moved: np.ndarray) -> None:
    o, n = old.offsets[position], new.offsets[position]
    old_spec, new_spec = old.fields[position], new.fields[position]
    mapping[o] = n  # the OOV index (a numeric field's value index)
    kept = moved >= 0
    mapping[o + 1 + np.flatnonzero(kept)] = n + 1 + moved[kept]
    old_missing, new_missing = old.missing_index(position), new.missing_index(position)
    if old_missing is not None and new_missing is not None:
        mapping[old_missing] = new_missing
    shared = min(old_spec.hash_buckets, new_spec.hash_buckets)
    mapping[o + old_spec.hash_offset + np.arange(shared)] = n + new_spec.hash_offset + np.arange(shared)
