"""The feature space: every field kind, OOV, and input errors."""

import numpy as np
import pytest

from model.features import FeatureError, FeatureSpace, FieldKind, FieldSpec


@pytest.fixture
def space() -> FeatureSpace:
    return FeatureSpace([
        FieldSpec(name="user", kind=FieldKind.CATEGORICAL, vocabulary=["u1", "u2"]),
        FieldSpec(name="genres", kind=FieldKind.MULTI, vocabulary=["drama", "comedy", "horror"],
                  max_entries=3, pooling="mean"),
        FieldSpec(name="tags", kind=FieldKind.MULTI, vocabulary=["a", "b"], max_entries=2,
                  pooling="sum"),
        FieldSpec(name="price", kind=FieldKind.NUMERIC, center=10.0, scale=5.0),
        FieldSpec(name="age", kind=FieldKind.BUCKETIZED, boundaries=[18, 35]),
    ])


def test_layout_reserves_padding_and_one_oov_per_field(space: FeatureSpace) -> None:
    # padding, user: oov+2, genres: oov+3, tags: oov+2, price: 1, age: oov+3 buckets
    assert space.offsets == [1, 4, 8, 11, 12]
    assert space.num_features == 16
    assert space.max_entries == 3
    assert space.pairs[:2] == [(0, 1), (0, 2)] and len(space.pairs) == 10


def test_every_kind_encodes(space: FeatureSpace) -> None:
    encoded = space.encode([
        {"user": "u2", "genres": ["drama", "horror"], "tags": ["a", "b"], "price": 20, "age": 40}
    ])
    idx, w = encoded.indices[0], encoded.weights[0]
    assert (idx[0, 0], w[0, 0]) == (3, 1.0)
    assert list(idx[1, :2]) == [5, 7] and list(w[1]) == [0.5, 0.5, 0.0]
    assert list(w[2, :2]) == [1.0, 1.0]
    assert (idx[3, 0], w[3, 0]) == (11, 2.0)
    assert idx[4, 0] == 12 + 1 + 2  # third bucket, [35, inf)
    assert encoded.oov == []


def test_bucket_edges_are_left_closed(space: FeatureSpace) -> None:
    idx = space.encode([{"age": 17.9}, {"age": 18}, {"age": 35}]).indices[:, 4, 0]
    assert list(idx - 13) == [0, 1, 2]


def test_unknown_value_maps_to_oov_and_is_reported(space: FeatureSpace) -> None:
    encoded = space.encode([{"user": "stranger", "genres": ["drama", "western"]}])
    assert encoded.indices[0, 0, 0] == space.oov_index(0)
    assert encoded.indices[0, 1, 1] == space.oov_index(1)
    assert encoded.oov == [(0, "user", "stranger"), (0, "genres", "western")]


def test_missing_or_null_field_is_empty(space: FeatureSpace) -> None:
    encoded = space.encode([{"user": "u1", "price": None}])
    assert np.count_nonzero(encoded.weights[0, 1:]) == 0


def test_integers_are_categorical_values() -> None:
    space = FeatureSpace([FieldSpec(name=n, kind=FieldKind.CATEGORICAL, vocabulary=["7"])
                          for n in ("a", "b")])
    assert space.encode([{"a": 7}]).indices[0, 0, 0] == space.index_of(0, "7")


@pytest.mark.parametrize(
    ("instance", "message"),
    [
        ({"nope": "x"}, "unknown field 'nope'"),
        ({"user": 1.5}, "string or an integer"),
        ({"user": True}, "string or an integer"),
        ({"price": "cheap"}, "takes a number"),
        ({"price": float("nan")}, "finite"),
        ({"age": float("inf")}, "finite"),
        ({"genres": ["drama"] * 4}, "at most 3 values"),
        ({"genres": [{"x": 1}]}, "string or an integer"),
    ],
)
def test_bad_values_raise_feature_error(space: FeatureSpace, instance: dict, message: str) -> None:
    with pytest.raises(FeatureError, match=message):
        space.encode([instance])


@pytest.mark.parametrize("value", [1e300, -1e300, 1.7e308, 6.8e39])
def test_numbers_overflowing_float32_once_normalised_are_refused(
    space: FeatureSpace, value: float
) -> None:
    # price: weight = (value - 10) / 5; float32 max is about 3.4e38
    with pytest.raises(FeatureError, match="instance 1: field 'price' holds a number too large"):
        space.encode([{"price": 1.0}, {"user": "u1", "price": value}])


def test_largest_float32_weight_is_kept() -> None:
    space = FeatureSpace([FieldSpec(name="x", kind=FieldKind.NUMERIC, scale=1e-10),
                          FieldSpec(name="y", kind=FieldKind.CATEGORICAL, vocabulary=["a"])])
    weights = space.encode([{"x": 3e28}, {"x": -3e28}]).weights[:, 0, 0]
    assert np.isfinite(weights).all() and weights[0] == np.float32(3e38)


def test_a_batch_encodes_as_its_rows_do(space: FeatureSpace) -> None:
    rows = [
        {"user": "u2", "genres": "comedy", "tags": [], "price": -3, "age": 18},
        {"user": 7, "genres": ["western", "drama"], "tags": ["b"], "price": None},
        {},
        {"age": 99.5, "user": "stranger", "tags": ["a", "zzz"]},
    ]
    batch = space.encode(rows)
    singles = [space.encode([row]) for row in rows]
    assert np.array_equal(batch.indices, np.concatenate([e.indices for e in singles]))
    assert np.array_equal(batch.weights, np.concatenate([e.weights for e in singles]))
    assert batch.indices.dtype == np.int64 and batch.weights.dtype == np.float32
    assert batch.oov == [(1, "user", "7"), (1, "genres", "western"), (3, "user", "stranger"),
                         (3, "tags", "zzz")]


def test_an_empty_batch_has_no_rows(space: FeatureSpace) -> None:
    encoded = space.encode([])
    assert encoded.indices.shape == (0, 5, 3) and encoded.weights.shape == (0, 5, 3)


def test_describe_round_trips_values(space: FeatureSpace) -> None:
    encoded = space.encode([{"user": "u1", "genres": ["comedy"], "price": 12.5, "age": 20}])
    described = [space.describe(f, encoded.indices[0, f], encoded.weights[0, f]) for f in range(5)]
    assert described == ["u1", ["comedy"], [], "12.5", "[18,35)"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "x", "kind": "categorical", "max_entries": 2}, "only multi-valued"),
        ({"name": "x", "kind": "numeric", "scale": 0.0}, "scale"),
        ({"name": "x", "kind": "bucketized", "boundaries": [3, 1]}, "sorted"),
        ({"name": "x", "kind": "categorical", "vocabulary": ["a", "a"]}, "duplicate"),
    ],
)
def test_invalid_field_specs_are_refused(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FieldSpec.model_validate(spec)


@pytest.fixture
def learned() -> FeatureSpace:
    return FeatureSpace([
        FieldSpec(name="c", kind=FieldKind.CATEGORICAL, vocabulary=["a", "b"], missing="learned",
                  hash_buckets=3),
        FieldSpec(name="m", kind=FieldKind.MULTI, vocabulary=["x"], max_entries=2, missing="learned"),
        FieldSpec(name="n", kind=FieldKind.NUMERIC, center=1.0, scale=2.0, missing="learned"),
        FieldSpec(name="b", kind=FieldKind.BUCKETIZED, boundaries=[0, 10], missing="learned"),
        FieldSpec(name="e", kind=FieldKind.CATEGORICAL, vocabulary=["a"]),
    ])


def test_layout_adds_missing_then_hash_indices(learned: FeatureSpace) -> None:
    # c: oov, a, b, missing, 3 hashes; m: oov, x, missing; n: value, missing; b: oov, 3 buckets, missing
    assert learned.offsets == [1, 8, 11, 13, 18]
    assert learned.missing_index(0) == 4 and learned.missing_index(2) == 12
    assert learned.missing_index(4) is None
    assert learned.fields[0].values == ["a", "b", "<missing>", "<hash 0>", "<hash 1>", "<hash 2>"]


@pytest.mark.parametrize("instance", [{}, {"c": None, "m": None, "n": None, "b": None},
                                      {"c": "", "m": [], "n": "", "b": ""}])
def test_absent_null_and_empty_values_take_the_missing_index(learned: FeatureSpace,
                                                             instance: dict) -> None:
    encoded = learned.encode([instance])
    assert encoded.indices[0, :, 0].tolist() == [4, 10, 12, 17, 0]
    assert encoded.weights[0, :, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert encoded.oov == []
    shown = [learned.describe(f, encoded.indices[0, f], encoded.weights[0, f]) for f in range(4)]
    assert shown == ["<missing>", ["<missing>"], "<missing>", "<missing>"]


def test_values_overwrite_the_missing_index(learned: FeatureSpace) -> None:
    encoded = learned.encode([{"c": "b", "m": ["x", "x"], "n": 5, "b": 10}])
    assert encoded.indices[0, :, 0].tolist() == [3, 9, 11, 16, 0]
    assert encoded.weights[0, 2, 0] == 2.0 and encoded.weights[0, 1].tolist() == [0.5, 0.5]


def test_unknown_values_hash_stably_and_are_reported(learned: FeatureSpace) -> None:
    import zlib

    encoded = learned.encode([{"c": "zzz"}, {"c": "zzz"}, {"e": "zzz"}])
    expected = 1 + 4 + zlib.crc32(b"zzz") % 3
    assert encoded.indices[:2, 0, 0].tolist() == [expected, expected]
    assert learned.hash_index(0, "zzz") == expected and learned.hash_index(4, "zzz") is None
    assert encoded.indices[2, 4, 0] == learned.oov_index(4)
    assert encoded.oov == [(0, "c", "zzz"), (1, "c", "zzz"), (2, "e", "zzz")]


def test_old_manifests_field_specs_load_with_the_old_layout() -> None:
    spec = FieldSpec.model_validate({"name": "c", "kind": "categorical", "vocabulary": ["a"],
                                     "max_entries": 1, "pooling": "mean", "center": 0.0,
                                     "scale": 1.0, "boundaries": []})
    assert spec.missing == "empty" and spec.hash_buckets == 0 and spec.table_size == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "x", "kind": "numeric", "hash_buckets": 2}, "only categorical and multi"),
        ({"name": "x", "kind": "categorical", "vocabulary": [""], "missing": "learned"}, "missing"),
    ],
)
def test_invalid_missing_and_hash_options_are_refused(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FieldSpec.model_validate(spec)
