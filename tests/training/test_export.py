"""The bundle: ONNX matches torch, the manifest describes the model, tampering is caught."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from model.bundle import Bundle, BundleError
from model.manifest import Manifest
from tests.helpers import FRAPPE, needs_frappe, train_bundle
from training import libfm
from training.config import load_config
from training.data import Dataset
from training.run import load_checkpoint, prepare_data


def _assert_parity(bundle_dir: Path, data: Dataset) -> None:
    model = load_checkpoint(bundle_dir)
    model.eval()
    expected = model.explain(torch.from_numpy(data.indices), torch.from_numpy(data.weights))
    got = Bundle.load(bundle_dir).run(data.indices, data.weights)
    for name in ("score", "attention", "contributions", "field_linear"):
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name).numpy(),
                                   atol=1e-5, rtol=1e-5, err_msg=name)


def test_onnx_matches_torch_on_synthetic_rows(synthetic_afm: Path) -> None:
    cfg = load_config(Path(__file__).parents[2] / "configs" / "synthetic-afm.toml")
    validation = prepare_data(cfg).validation
    rows = validation.read(0, len(validation))
    _assert_parity(synthetic_afm, Dataset(rows.indices.astype(np.int64), rows.weights, rows.labels))


@pytest.mark.slow
@needs_frappe()
def test_onnx_matches_torch_on_10000_frappe_rows(tmp_path: Path) -> None:
    train_bundle("frappe-afm.toml", tmp_path, [
        "model.embed_dim=16", "train.epochs=1", "train.pretrain=''",
    ])
    bundle = Bundle.load(tmp_path)
    rows = libfm.read_libfm(FRAPPE / "frappe.validation.libfm")
    data = libfm.encode(bundle.features, rows, rows.labels)
    head = Dataset(data.indices[:10_000], data.weights[:10_000], data.labels[:10_000])
    _assert_parity(tmp_path, head)


def test_manifest_describes_the_model(synthetic_afm: Path) -> None:
    manifest = Manifest.read(synthetic_afm)
    assert manifest.kind == "afm" and manifest.task == "regression"
    assert [f.name for f in manifest.fields] == [f"f{i}" for i in range(6)]
    assert len(manifest.pairs) == len(manifest.importance) == 15
    assert manifest.metrics["rmse"] > 0
    assert manifest.training["model"]["embed_dim"] == 4
    bundle = Bundle.load(synthetic_afm)
    encoded = bundle.features.encode([{"f0": "v1", "f1": "v2", "f2": "v3"}])
    out = bundle.run(encoded.indices, encoded.weights)
    rebuilt = manifest.bias + out.field_linear.sum(1) + out.contributions.sum(1)
    np.testing.assert_allclose(out.score, rebuilt, atol=1e-5)


@pytest.fixture
def bundle_copy(synthetic_afm: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(synthetic_afm, target)
    return target


def test_tampered_onnx_is_refused(bundle_copy: Path) -> None:
    onnx_path = bundle_copy / "model.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:-10])
    with pytest.raises(BundleError, match="sha256"):
        Bundle.load(bundle_copy)


def test_missing_files_are_refused(bundle_copy: Path) -> None:
    (bundle_copy / "model.onnx").unlink()
    with pytest.raises(BundleError, match="model.onnx is missing"):
        Bundle.load(bundle_copy)
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Bundle.load(bundle_copy)


def test_manifest_errors_name_the_key(bundle_copy: Path) -> None:
    path = bundle_copy / "manifest.json"
    path.write_text(path.read_text().replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(BundleError, match="format_version"):
        Bundle.load(bundle_copy)
