"""The impression log's schema and files: types per field kind, hour partitions, atomic files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from model import impressions as im
from model.features import FeatureSpace, FieldKind, FieldSpec

FIELDS = [
    FieldSpec(name="user", kind=FieldKind.CATEGORICAL, vocabulary=["u1"]),
    FieldSpec(name="tags", kind=FieldKind.MULTI, vocabulary=["a", "b"], max_entries=3),
    FieldSpec(name="age", kind=FieldKind.NUMERIC),
    FieldSpec(name="price", kind=FieldKind.BUCKETIZED, boundaries=[1.0, 10.0]),
]
START = datetime(2024, 5, 1, 10, 59, 58, tzinfo=UTC)


def rows(n: int, start: datetime = START) -> list[dict[str, Any]]:
    return [{
        im.IMPRESSION_ID: im.impression_id(f"req{i // 2}", i % 2), im.REQUEST_ID: f"req{i // 2}",
        im.POSITION: i % 2, im.TIME: start + timedelta(seconds=i), im.ROUTE: "predict",
        im.MODEL_NAME: "m", im.MODEL_VERSION: "1", im.MODEL_SHA256: "0" * 64,
        im.SCORE: 0.5 * i, im.PREDICTION: 0.6, im.OOV: ["user"] if i == 1 else [],
        im.FEATURES: {"user": "u9" if i == 1 else "u1", "tags": ["a"], "age": 30.0 + i,
                      "price": None},
    } for i in range(n)]


def test_schema_types_each_field_by_its_kind() -> None:
    schema = im.impression_schema(FIELDS)
    features = schema.field(im.FEATURES).type
    assert [features.field(i).name for i in range(features.num_fields)] == ["user", "tags", "age", "price"]
    assert [features.field(i).type for i in range(features.num_fields)] == [
        pa.string(), pa.list_(pa.string()), pa.float64(), pa.float64()]
    assert schema.field(im.TIME).type == pa.timestamp("us", tz="UTC")
    assert schema.field(im.POSITION).type == pa.int32()
    assert not schema.field(im.IMPRESSION_ID).nullable and schema.field(im.PREDICTION).nullable
    assert {im.SHADOW_MODEL_VERSION, im.SHADOW_SCORE, im.SHADOW_PREDICTION} <= set(schema.names)
    assert schema.metadata[im.VERSION_KEY] == im.FORMAT_VERSION.encode()


def test_a_table_spanning_two_hours_is_written_into_both_partitions(tmp_path: Path) -> None:
    table = pa.Table.from_pylist(rows(4), schema=im.impression_schema(FIELDS))
    paths = im.write_part(tmp_path, table, "host-1", 7)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "date=2024-05-01/hour=10/part-host-1-000007.parquet",
        "date=2024-05-01/hour=11/part-host-1-000007.parquet"]
    assert im.part_files(tmp_path) == paths
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    back = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    assert back.num_rows == 4
    hours = dict(zip(back.column(im.IMPRESSION_ID).to_pylist(), back.column("hour").to_pylist(), strict=True))
    assert hours == {"req0-0": 10, "req0-1": 10, "req1-0": 11, "req1-1": 11}


def test_an_open_file_is_invisible_until_closed(tmp_path: Path) -> None:
    table = pa.Table.from_pylist(rows(2), schema=im.impression_schema(FIELDS))
    part = im.PartFile(tmp_path, START, "w", 1, table.schema)
    part.write(table)
    assert im.part_files(tmp_path) == []
    assert ds.dataset(tmp_path, format="parquet").count_rows() == 0  # pyarrow skips it too
    assert part.close() == im.part_files(tmp_path)[0] and part.rows == 2
    assert ds.dataset(tmp_path, format="parquet").count_rows() == 2


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    schema = im.impression_schema(FIELDS)
    with pytest.raises(RuntimeError), im.PartFile(tmp_path, START, "w", 1, schema) as part:
        part.write(pa.Table.from_pylist(rows(1), schema=schema))
        raise RuntimeError("the writer stops")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("worker", ["", ".hidden", "_x", "a/b"])
def test_worker_names_that_would_hide_or_move_a_file_are_refused(worker: str) -> None:
    with pytest.raises(ValueError, match="worker"):
        im.part_name(worker, 1)


def test_part_files_of_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        im.part_files(tmp_path / "nope")


def test_logged_values_encode_as_the_instances_did() -> None:
    """What the log records of an instance, read back as an instance, encodes to the same
    indices and weights: the training day sees what the service saw."""
    fields = [*FIELDS, FieldSpec(name="city", kind=FieldKind.CATEGORICAL, vocabulary=["7", "x"],
                                 missing="learned"),
              FieldSpec(name="kind", kind=FieldKind.CATEGORICAL, vocabulary=["a"])]
    space = FeatureSpace(fields)
    instances: list[dict[str, Any]] = [
        {"user": "u1", "tags": ["a", "zz"], "age": 3, "price": 4.5, "city": 7, "kind": ""},
        {"user": 12, "tags": "b", "age": None, "city": "", "kind": "a"},
        {"tags": [], "price": 0, "city": "nowhere"},
        {},
    ]
    logged = [im.feature_values(fields, instance) for instance in instances]
    table = pa.Table.from_pylist([{im.FEATURES: row} for row in logged],
                                 schema=pa.schema([pa.field(im.FEATURES, im.features_type(fields))]))
    back = [{k: v for k, v in row.items() if v is not None} for row in table.column(im.FEATURES).to_pylist()]
    original, again = space.encode(instances), space.encode(back)
    assert np.array_equal(original.indices, again.indices)
    assert np.array_equal(original.weights, again.weights)
    assert original.oov == again.oov
    assert logged[0]["city"] == "7" and logged[1]["city"] is None and logged[0]["kind"] == ""


TRICKY = [
    *FIELDS,
    FieldSpec(name="city", kind=FieldKind.CATEGORICAL, vocabulary=["7", "x"], missing="learned"),
    FieldSpec(name="kind", kind=FieldKind.CATEGORICAL, vocabulary=["a"]),
    FieldSpec(name="labels", kind=FieldKind.MULTI, vocabulary=["p", "q"], max_entries=2,
              missing="learned"),
    FieldSpec(name="rank", kind=FieldKind.NUMERIC, missing="learned"),
]


@pytest.mark.parametrize("instances", [
    [{"user": "u1", "tags": ["a", "b"], "age": 3.5, "price": 4, "city": "x", "kind": "a",
      "labels": ["p"]}, {"user": "u9", "age": 2**60, "city": ""}, {}],  # pyarrow's own path
    [{"user": 12, "tags": "b", "age": None, "city": 7, "kind": "", "labels": ""},
     {"tags": [1, "a"], "rank": "", "labels": [""]}, {"user": None, "tags": None}],  # value by value
])
def test_the_columnar_features_are_feature_values_row_by_row(instances: list[dict[str, Any]]) -> None:
    FeatureSpace(TRICKY).encode(instances)  # instances the service accepts
    expected = pa.array([im.feature_values(TRICKY, i) for i in instances], im.features_type(TRICKY))
    assert im.features_array(TRICKY, instances).equals(expected)


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
    features, oov = im.tensor_features(space, encoded.indices, encoded.weights)
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
    features, oov = im.tensor_features(space, indices, encoded.weights)
    assert features.to_pylist()[0]["user"] is None and oov == [["user"]]
