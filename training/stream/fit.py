"""Declared fields (`training.fields.FieldDecl`) fitted on pass 1's counts: vocabularies of
the values seen at least `min_count` times, numeric normalisation, multi-valued widths."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from model.features import FeatureSpace, FieldKind, FieldSpec
from training.fields import FieldDecl
from training.stream.counts import Counts, Moments


def vocabulary(counts: pa.Table, min_count: int) -> list[str]:
    """Values seen at least `min_count` times, most frequent first, ties by value
    (training.data.build_vocabulary's order)."""
    kept = counts.filter(pc.greater_equal(counts.column("counts"), min_count))
    ordered = kept.sort_by([("counts", "descending"), ("values", "ascending")])
    return ordered.column("values").to_pylist()


def feature_space(fields: list[FieldDecl], counts: Counts, min_count: int,
                  missing: Literal["empty", "learned"], hash_buckets: int) -> FeatureSpace:
    return FeatureSpace([fit_field(d, counts, min_count, missing, hash_buckets) for d in fields])


def fit_field(decl: FieldDecl, counts: Counts, min_count: int,
              missing: Literal["empty", "learned"], hash_buckets: int) -> FieldSpec:
    """A field's spec from the training rows' counts; `missing` and `hash_buckets` apply to
    every field that takes them (hash buckets: categorical and multi-valued)."""
    name, kind = decl.name, decl.kind
    if kind in (FieldKind.CATEGORICAL, FieldKind.MULTI):
        width = decl.max_entries or max(counts.longest.get(name, 0), 1) if kind == FieldKind.MULTI else 1
        return FieldSpec(name=name, kind=kind, vocabulary=vocabulary(counts.values[name], min_count),
                         missing=missing, hash_buckets=hash_buckets, pooling=decl.pooling,
                         max_entries=width)
    if kind == FieldKind.BUCKETIZED:
        return FieldSpec(name=name, kind=kind, boundaries=decl.boundaries, missing=missing)
    center, scale = normalization(decl.normalization, counts.numbers[name])
    return FieldSpec(name=name, kind=kind, center=center, scale=scale, missing=missing)


def normalization(method: str, moments: Moments) -> tuple[float, float]:
    """(center, scale) as training.tabular fits them; a constant or empty column keeps scale 1."""
    if method == "none" or not moments.count:
        return 0.0, 1.0
    if method == "standard":
        center, spread = moments.mean, moments.std
    else:
        center, spread = moments.minimum, moments.maximum - moments.minimum
    return center, spread if spread > 0 else 1.0
