"""The log's `features` and `oov` columns built a column at a time: from field values and
their encoding, exactly what `feature_values` records row by row; from raw tensors, the
values read back through the vocabularies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from model import impressions as im
from model.features import FeatureSpace, FieldKind, FieldSpec
from model.impression_columns import FeatureColumns
from tests.model.test_impressions import FIELDS, TRICKY

HASHED = [*TRICKY, FieldSpec(name="item", kind=FieldKind.CATEGORICAL, vocabulary=["i1"], hash_buckets=3)]


@pytest.mark.parametrize("instances", [
    [{"user": "u1", "tags": ["a", "b"], "age": 3.5, "price": 4, "city": "x", "kind": "a",
      "labels": ["p"], "item": "i1"},
     {"user": "u9", "age": 2**60, "city": "", "kind": "", "item": "new"}, {}],
    [{"user": 12, "tags": "b", "age": None, "city": 7, "kind": "", "labels": "", "item": 5},
     {"tags": [1, "a"], "rank": "", "labels": [""], "city": "nowhere"},
     {"user": None, "tags": None, "kind": "zz", "item": ""}],
])
def test_columns_of_instances_are_feature_values_row_by_row(instances: list[dict[str, Any]]) -> None:
    space = FeatureSpace(HASHED)
    encoded = space.encode(instances)
    expected = pa.array([im.feature_values(HASHED, i) for i in instances], im.features_type(HASHED))
    assert FeatureColumns(space).of_instances(encoded, instances).equals(expected)


def test_tensors_are_read_back_through_the_vocabularies() -> None:
    """What the Open Inference Protocol's tensors hold, logged as values: known values by
    name, numbers un-normalised, a bucket as its lower edge (the first: its upper edge - 1),
    missing as null, and an index that names no value as null with its field in `oov`."""
    fields = [
        FieldSpec(name="user", kind=FieldKind.CATEGORICAL, vocabulary=["u1", "u2"], missing="learned"),
        FieldSpec(name="item", kind=FieldKind.CATEGORICAL, vocabulary=["i1"], hash_buckets=3),
        FieldSpec(name="tags", kind=FieldKind.MULTI, vocabulary=["a", "b"], max_entries=3),
        FieldSpec(name="age", kind=FieldKind.NUMERIC, center=30.0, scale=10.0),
        FieldSpec(name="price", kind=FieldKind.BUCKETIZED, boundaries=[1.0, 10.0]),
    ]
    space = FeatureSpace(fields)
    instances: list[dict[str, Any]] = [
        {"user": "u2", "item": "i1", "tags": ["b", "a"], "age": 42.5, "price": 5.0},
        {"user": "nobody", "item": "new", "tags": ["a", "zz"], "age": 30.0, "price": -3.0},
        {"tags": ["zz"], "price": 10.0},
        {},
    ]
    encoded = space.encode(instances)
    features, oov = FeatureColumns(space).of_tensors(encoded.indices, encoded.weights)
    assert features.to_pylist() == [
        {"user": "u2", "item": "i1", "tags": ["b", "a"], "age": 42.5, "price": 1.0},
        {"user": None, "item": None, "tags": ["a"], "age": 30.0, "price": 0.0},
        {"user": None, "item": None, "tags": None, "age": None, "price": 10.0},
        {"user": None, "item": None, "tags": None, "age": None, "price": None},
    ]
    assert oov == [[], ["user", "item", "tags"], ["tags"], []]
    known = [{k: v for k, v in row.items() if v is not None} for row in features.to_pylist()[:1]]
    again = space.encode(known)  # a row of known values encodes as its tensors did
    assert np.array_equal(again.indices, encoded.indices[:1])
    np.testing.assert_allclose(again.weights, encoded.weights[:1], rtol=1e-6)


def test_an_index_of_another_field_names_no_value_of_this_one() -> None:
    space = FeatureSpace(FIELDS)
    encoded = space.encode([{"user": "u1", "tags": ["a"]}])
    indices = encoded.indices.copy()
    indices[0, 0, 0] = indices[0, 1, 0]  # user holds tags' "a"
    features, oov = FeatureColumns(space).of_tensors(indices, encoded.weights)
    assert features.to_pylist()[0]["user"] is None and oov == [["user"]]
