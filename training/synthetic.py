"""Built-in data: categorical fields where only a few planted field pairs interact.

The target is a sum of low-rank interaction tables over the planted pairs, a small
linear term and noise. Every field takes part in some planted pair, so every other
pair of fields is a real product of trained embeddings that carries only noise: a
model that weighs interactions (AFM) must learn to look away from them.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.features import FeatureSpace, FieldKind, FieldSpec
from training.data import Dataset


class SyntheticSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    num_fields: int = Field(default=6, ge=2)
    cardinality: int = Field(default=30, ge=2)
    planted: list[tuple[int, int]] = [(0, 1), (2, 3), (4, 5)]
    rank: int = Field(default=2, ge=1)
    linear_scale: float = 0.1
    noise: float = 0.05
    rows: int = Field(default=40_000, ge=10)
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = 7

    @model_validator(mode="after")
    def _pairs_in_range(self) -> SyntheticSpec:
        for i, j in self.planted:
            if not 0 <= i < j < self.num_fields:
                raise ValueError(f"planted pair {(i, j)} needs 0 <= i < j < {self.num_fields}")
        return self

    def field_names(self) -> list[str]:
        return [f"f{i}" for i in range(self.num_fields)]

    def planted_names(self) -> list[tuple[str, str]]:
        names = self.field_names()
        return [(names[i], names[j]) for i, j in self.planted]


def generate(spec: SyntheticSpec) -> tuple[list[dict[str, str]], np.ndarray]:
    """-> raw instances ({"f0": "v3", ...}) and their regression targets."""
    rng = np.random.default_rng(spec.seed)
    ids = rng.integers(0, spec.cardinality, size=(spec.rows, spec.num_fields))
    target = np.zeros(spec.rows)
    for i, j in spec.planted:
        u = rng.normal(size=(spec.cardinality, spec.rank))
        v = rng.normal(size=(spec.cardinality, spec.rank))
        table = u @ v.T / np.sqrt(spec.rank)  # unit variance per planted pair
        target += table[ids[:, i], ids[:, j]]
    for f in range(spec.num_fields):
        target += spec.linear_scale * rng.normal(size=spec.cardinality)[ids[:, f]]
    target += spec.noise * rng.normal(size=spec.rows)
    names = spec.field_names()
    instances = [{name: f"v{k}" for name, k in zip(names, row, strict=True)} for row in ids.tolist()]
    return instances, target.astype(np.float32)


def feature_space(spec: SyntheticSpec) -> FeatureSpace:
    vocabulary = [f"v{k}" for k in range(spec.cardinality)]
    return FeatureSpace(
        [FieldSpec(name=n, kind=FieldKind.CATEGORICAL, vocabulary=vocabulary) for n in spec.field_names()]
    )


def datasets(spec: SyntheticSpec) -> tuple[FeatureSpace, Dataset, Dataset]:
    space = feature_space(spec)
    instances, target = generate(spec)
    encoded = space.encode(instances)
    cut = int(spec.rows * (1 - spec.validation_fraction))
    train = Dataset(encoded.indices[:cut], encoded.weights[:cut], target[:cut])
    validation = Dataset(encoded.indices[cut:], encoded.weights[cut:], target[cut:])
    return space, train, validation
