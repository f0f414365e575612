"""model/reference.py: encoded rows counted into a reference's bins (every field kind, the
out-of-vocabulary, hashed and missing cases), the PSI, and references that do not fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from model.features import FeatureSpace, FieldKind, FieldSpec
from model.reference import EPSILON, Bins, FieldReference, Reference, ScoreReference, psi

SPACE = FeatureSpace([
    FieldSpec(name="city", kind=FieldKind.CATEGORICAL, vocabulary=["a", "b", "c"],
              missing="learned", hash_buckets=2),
    FieldSpec(name="tags", kind=FieldKind.MULTI, vocabulary=["x", "y", "z"], max_entries=2),
    FieldSpec(name="price", kind=FieldKind.NUMERIC, center=10.0, scale=2.0),
    FieldSpec(name="age", kind=FieldKind.BUCKETIZED, boundaries=[18.0, 65.0]),
])


def uniform(bins: int) -> list[float]:
    return [1.0 / bins] * bins


REFERENCE = Reference(
    rows=10,
    fields=[
        FieldReference(name="city", kind="values", values=["b", "a"], shares=uniform(5)),
        FieldReference(name="tags", kind="values", values=["x"], shares=uniform(4)),
        FieldReference(name="price", kind="quantiles", edges=[-1.0, 1.0], shares=uniform(4)),
        FieldReference(name="age", kind="values", values=["[18,65)"], shares=uniform(4)),
    ],
    score=ScoreReference(edges=[0.0], shares=[0.5, 0.5]),
)


def counts_by_name(instances: list[dict[str, object]]) -> dict[str, dict[str, int]]:
    bins = Bins(SPACE, REFERENCE)
    encoded = SPACE.encode(instances)
    counts = bins.count(encoded.indices, encoded.weights)
    out = {}
    for field, start in zip(REFERENCE.fields, bins.starts.tolist(), strict=True):
        names = field.bin_names()
        out[field.name] = {n: int(c) for n, c in zip(names, counts[start:start + len(names)],
                                                     strict=True) if c}
    return out


def test_each_value_lands_in_its_bin_and_the_rest_in_other_oov_or_missing() -> None:
    counts = counts_by_name([
        {"city": "b", "tags": ["x", "y"], "price": 10.0, "age": 30},
        {"city": "c", "tags": [], "price": 9.0, "age": 10},
        {"city": "never-seen", "tags": ["unknown"], "price": 14.0},
        {"city": "", "price": 11.0, "age": 70},
        {},
    ])
    assert counts["city"] == {"b": 1, "<other>": 1, "<oov>": 1, "<missing>": 2}  # "" and absent
    # a multi-valued field counts each value; an instance with none once as missing
    assert counts["tags"] == {"x": 1, "<other>": 1, "<oov>": 1, "<missing>": 3}
    # price: (v - 10) / 2 against edges -1, 1; exactly 0 is what the model reads as absent
    assert counts["price"] == {"[-1,1)": 2, "[1,inf)": 1, "<missing>": 2}
    assert counts["age"] == {"[18,65)": 1, "<other>": 2, "<missing>": 2}


def test_hashed_values_count_as_out_of_vocabulary() -> None:
    assert counts_by_name([{"city": f"new-{k}"} for k in range(6)])["city"] == {"<oov>": 6}


def test_scores_fall_in_their_bins() -> None:
    bins = Bins(SPACE, REFERENCE)
    assert bins.count_scores(np.array([-1.0, 0.0, 2.0, -0.5])).tolist() == [2, 2]


def test_psi_is_zero_on_the_reference_and_grows_with_the_shift() -> None:
    reference = [0.5, 0.3, 0.2]
    assert psi(reference, reference) == 0.0
    small, large = psi([0.45, 0.33, 0.22], reference), psi([0.2, 0.3, 0.5], reference)
    assert 0 < small < 0.1 < 0.25 < large
    manual = sum((o - r) * math.log(o / r) for o, r in zip([0.2, 0.3, 0.5], reference, strict=True))
    assert large == pytest.approx(manual)


def test_an_empty_bin_counts_as_epsilon_not_infinity() -> None:
    value = psi([0.0, 1.0], [0.5, 0.5])
    assert math.isfinite(value)
    assert value == pytest.approx((EPSILON - 0.5) * math.log(EPSILON / 0.5) + 0.5 * math.log(2))


def test_field_psi_of_rows_against_their_own_shares_is_zero() -> None:
    bins = Bins(SPACE, REFERENCE)
    encoded = SPACE.encode([{"city": "a", "tags": ["x"], "price": 12.0, "age": 20},
                            {"city": "q", "price": 5.0}])
    counts = bins.count(encoded.indices, encoded.weights)
    fields = []
    for field, start in zip(REFERENCE.fields, bins.starts.tolist(), strict=True):
        part = counts[start:start + len(field.shares)]
        fields.append(field.model_copy(update={"shares": (part / part.sum()).tolist()}))
    own = Bins(SPACE, REFERENCE.model_copy(update={"fields": fields}))
    assert np.allclose(own.field_psi(counts), 0.0)
    assert (bins.field_psi(counts) > 0).all()


@pytest.mark.parametrize(("change", "message"), [
    ({"shares": [0.5, 0.5]}, "2 shares for 5 bins"),
    ({"shares": [0.5, 0.5, 0.5, 0.0, 0.0]}, "add up to 1"),
    ({"edges": [1.0]}, "take no edges"),
])
def test_a_field_reference_that_does_not_add_up_is_refused(change: dict[str, object],
                                                           message: str) -> None:
    data = {"name": "city", "kind": "values", "values": ["b", "a"], "shares": uniform(5), **change}
    with pytest.raises(ValidationError, match=message):
        FieldReference.model_validate(data)


def test_a_reference_of_other_fields_or_values_is_refused() -> None:
    other = REFERENCE.model_copy(update={"fields": list(reversed(REFERENCE.fields))})
    with pytest.raises(ValueError, match="do not match"):
        other.check(SPACE)
    unknown = REFERENCE.fields[0].model_copy(update={"values": ["b", "zz"]})
    with pytest.raises(ValueError, match="not in its vocabulary"):
        REFERENCE.model_copy(update={"fields": [unknown, *REFERENCE.fields[1:]]}).check(SPACE)
