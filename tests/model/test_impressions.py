"""The impression log's schema and files: types per field kind, hour partitions, atomic files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
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


@pytest.mark.parametrize("count", [0, 1, 3, 5000])
def test_a_requests_impression_ids_are_its_position_ids(count: int) -> None:
    assert im.impression_ids("r-9", count) == [im.impression_id("r-9", p) for p in range(count)]


def test_files_keep_statistics_where_readers_prune_and_dictionaries_where_values_repeat(
        tmp_path: Path) -> None:
    table = pa.Table.from_pylist(rows(4, START.replace(minute=0)), schema=im.impression_schema(FIELDS))
    [path] = im.write_part(tmp_path, table, "w", 1)
    group = pq.ParquetFile(path).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert {p for p, c in columns.items() if c.is_stats_set} == set(im.STATISTICS)
    assert columns[im.TIME].statistics.min == START.replace(minute=0)
    dictionary = {p for p, c in columns.items() if c.has_dictionary_page}
    assert {"request_id", "features.user", "features.tags.list.element", "oov.list.element"} <= dictionary
    assert not dictionary & {im.IMPRESSION_ID, im.SCORE, im.TIME, "features.age"}
