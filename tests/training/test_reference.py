"""The bundle's reference (training/reference.py): the validation rows' own distributions,
counted by the code the service counts traffic with, so they are at PSI 0 from themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.afm import ModelConfig, build_model
from model.bundle import Bundle
from model.features import FeatureSpace, FieldKind, FieldSpec
from model.reference import TOP_VALUES, Bins
from training.config import load_config
from training.data import Dataset
from training.export import Serving, export_onnx
from training.reference import build_reference
from training.run import prepare_data
from training.shards import write_dataset

REPO = Path(__file__).resolve().parents[2]
SPACE = FeatureSpace([
    FieldSpec(name="user", kind=FieldKind.CATEGORICAL,
              vocabulary=[f"u{k}" for k in range(40)], missing="learned"),
    FieldSpec(name="price", kind=FieldKind.NUMERIC, center=50.0, scale=20.0, missing="learned"),
    FieldSpec(name="tags", kind=FieldKind.MULTI, vocabulary=list("abcdef"), max_entries=3),
])


def test_a_trained_bundles_reference_is_its_validation_rows(synthetic_afm: Path) -> None:
    bundle = Bundle.load(synthetic_afm)
    reference = bundle.manifest.reference
    assert reference is not None
    cfg = load_config(REPO / "configs" / "synthetic-afm.toml")
    validation = prepare_data(cfg).validation
    rows = validation.read(0, len(validation))
    indices = rows.indices.astype(np.int64)
    bins = Bins(bundle.features, reference)
    assert reference.rows == len(validation)
    assert np.allclose(bins.field_psi(bins.count(indices, rows.weights)), 0.0)
    scores = bundle.run(indices, rows.weights).score
    assert bins.score_psi(bins.count_scores(scores)) == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(reference.score.shares, 0.1, atol=0.01)  # deciles
    for field in reference.fields:
        assert len(field.values) == TOP_VALUES  # 30 values a field: the 20 most frequent kept
        assert field.shares[-2:] == [0.0, 0.0]  # no value out of vocabulary, none missing


def rows(count: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    out: list[dict[str, object]] = []
    for _ in range(count):
        instance: dict[str, object] = {"user": f"u{min(int(rng.zipf(1.5)), 39)}",
                                       "tags": list(rng.choice(list("abcdef"), 2, replace=False))}
        if rng.random() < 0.8:
            instance["price"] = float(np.round(rng.normal(50, 20), 1))
        if rng.random() < 0.1:
            instance["user"] = "someone-new"
        out.append(instance)
    return out


def test_numeric_fields_get_their_deciles_and_values_their_shares(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ModelConfig(kind="afm", num_features=SPACE.num_features, num_fields=3,
                         embed_dim=4, attention_dim=4, pair_dropout=0.0)
    export_onnx(build_model(config), SPACE, tmp_path / "model.onnx", Serving("binary", (0.0, 1.0)))
    encoded = SPACE.encode(rows(3000, seed=1))
    shards = write_dataset(tmp_path / "shards", Dataset(encoded.indices, encoded.weights,
                                                        np.zeros(3000, np.float32)))
    reference = build_reference(tmp_path / "model.onnx", SPACE, shards, max_rows=2500)
    user, price, tags = reference.fields
    assert reference.rows == 2500
    assert user.values[:2] == ["u1", "u2"]  # zipf: most frequent first
    assert user.shares[-2] == pytest.approx(0.1, abs=0.02)  # <oov>
    assert price.kind == "quantiles" and len(price.edges) == 9
    assert price.shares[-1] == pytest.approx(0.2, abs=0.03)  # <missing>
    assert np.allclose(price.shares[:-1], 0.08, atol=0.015)  # deciles of the 80% present
    assert sorted(tags.values) == list("abcdef") and tags.shares[-3:] == [0.0, 0.0, 0.0]
    assert np.allclose(reference.score.shares, 0.1, atol=0.01)
