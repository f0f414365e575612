"""The bundle: ONNX matches torch, the manifest describes the model, tampering is caught."""

import json
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model.afm import ModelConfig, PairModel, build_model
from model.bundle import Bundle, BundleError
from model.calibration import Calibration, Isotonic, Platt
from model.features import FeatureSpace, FieldKind, FieldSpec
from model.manifest import OUTPUT_NAMES, Manifest, sha256_file
from tests.helpers import FRAPPE, needs_frappe, train_bundle
from tests.helpers.bundles import set_manifest
from training import libfm
from training.config import load_config
from training.data import Dataset
from training.export import Serving, export_onnx, write_bundle
from training.run import load_checkpoint, prepare_data
from training.shards import write_dataset


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
    path.write_text(path.read_text().replace('"format_version": 3', '"format_version": 99'))
    with pytest.raises(BundleError, match="format_version"):
        Bundle.load(bundle_copy)


def _tiny_model(bias: float = -1.5) -> tuple[PairModel, FeatureSpace, Dataset]:
    """An untrained AFM over three fields and every instance of two of their values."""
    space = FeatureSpace([FieldSpec(name=f"f{i}", kind=FieldKind.CATEGORICAL, vocabulary=list("abcd"))
                          for i in range(3)])
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="afm", num_features=space.num_features, num_fields=3,
                                    embed_dim=4, attention_dim=4, pair_dropout=0.0))
    with torch.no_grad():
        model.linear.bias.fill_(bias)
        model.linear.weight.weight.normal_(0.0, 1.0)  # scores over several units
    instances = [{"f0": a, "f1": b, "f2": c} for a in "ab" for b in "abcd" for c in "abcd"] + [{}]
    encoded = space.encode(instances)
    labels = np.arange(len(instances)) % 2
    return model, space, Dataset(encoded.indices, encoded.weights, labels.astype(np.float32))


def _graph(model: PairModel, space: FeatureSpace, data: Dataset, serving: Serving,
           path: Path) -> dict[str, np.ndarray]:
    export_onnx(model, space, path, serving)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"indices": data.indices, "weights": data.weights})
    return dict(zip(OUTPUT_NAMES, outputs, strict=True))


def test_the_graph_adds_ln_w_to_the_logit(tmp_path: Path) -> None:
    model, space, data = _tiny_model()
    got = _graph(model, space, data, Serving("binary", (0.0, 1.0), negative_keep_rate=0.25),
                 tmp_path / "m.onnx")
    expected = model.explain(torch.from_numpy(data.indices), torch.from_numpy(data.weights))
    np.testing.assert_allclose(got["score"], expected.score.numpy() + np.log(0.25), atol=1e-5)
    assert got["score"][-1] == pytest.approx(-1.5 + np.log(0.25), abs=1e-6)  # the empty instance
    np.testing.assert_allclose(got["contributions"], expected.contributions.numpy(), atol=1e-6)
    np.testing.assert_allclose(got["prediction"], 1 / (1 + np.exp(-got["score"])), atol=1e-6)


def _maps(scores: np.ndarray) -> dict[str, Calibration]:
    """Maps over the scores' range: isotonic knots inside it, so that scores beyond the
    first and last knot test the flat ends."""
    low, high = np.quantile(scores, [0.2, 0.8])
    values = np.sort(np.random.default_rng(0).random(37))
    return {"platt": Platt(a=0.8, b=-0.3),
            "isotonic": Isotonic(x=np.linspace(low, high, 37).tolist(), y=values.tolist()),
            "isotonic-two-knots": Isotonic(x=[low, high], y=[0.01, 0.9])}


@pytest.mark.parametrize("kind", ["platt", "isotonic", "isotonic-two-knots"])
def test_calibration_maps_in_the_graph_match_numpy(tmp_path: Path, kind: str) -> None:
    model, space, data = _tiny_model()
    uncalibrated = _graph(model, space, data, Serving("binary", (0.0, 1.0), 0.5), tmp_path / "a.onnx")
    calibration = _maps(uncalibrated["score"])[kind]
    got = _graph(model, space, data, Serving("binary", (0.0, 1.0), 0.5, calibration), tmp_path / "b.onnx")
    np.testing.assert_allclose(got["score"], uncalibrated["score"])
    np.testing.assert_allclose(got["prediction"], calibration.probability(got["score"]), atol=2e-6)


def test_regression_prediction_is_the_clipped_score(tmp_path: Path) -> None:
    model, space, data = _tiny_model(bias=0.0)
    got = _graph(model, space, data, Serving("regression", (-1.0, 1.0)), tmp_path / "m.onnx")
    assert got["score"].min() < -1 and got["score"].max() > 1
    np.testing.assert_allclose(got["prediction"], np.clip(got["score"], -1.0, 1.0))


def _binary_bundle(directory: Path, serving: Serving, format_version: Literal[2, 3] = 3) -> Bundle:
    model, space, data = _tiny_model()
    validation = write_dataset(directory / "validation", data)
    write_bundle(directory / "bundle", model, space, name="tiny", version="1", serving=serving,
                 validation=validation, training={}, data={}, metrics={},
                 format_version=format_version)
    return Bundle.load(directory / "bundle")


def test_the_manifest_records_the_correction_and_the_map(tmp_path: Path) -> None:
    bundle = _binary_bundle(tmp_path, Serving("binary", (0.0, 1.0), 0.1, Platt(a=1.1, b=0.2)))
    manifest = bundle.manifest
    assert manifest.format_version == 3
    assert manifest.negative_keep_rate == 0.1 and manifest.logit_shift == pytest.approx(np.log(0.1))
    assert manifest.calibration == Platt(a=1.1, b=0.2)
    encoded = bundle.features.encode([{"f0": "a", "f1": "c"}, {}])
    out = bundle.run(encoded.indices, encoded.weights)
    rebuilt = manifest.bias + manifest.logit_shift + out.field_linear.sum(1) + out.contributions.sum(1)
    np.testing.assert_allclose(out.score, rebuilt, atol=1e-5)
    np.testing.assert_allclose(out.prediction, bundle.prediction(out.score), atol=1e-6)


def test_a_manifest_whose_shift_is_not_ln_w_is_refused(tmp_path: Path) -> None:
    _binary_bundle(tmp_path, Serving("binary", (0.0, 1.0), 0.25))
    set_manifest(tmp_path / "bundle", logit_shift=0.0)
    with pytest.raises(BundleError, match="logit_shift"):
        Bundle.load(tmp_path / "bundle")


def _as_format_1(directory: Path) -> None:
    """A bundle as written before the graph had a prediction output."""
    path = directory / "model.onnx"
    graph = onnx.load(str(path))
    kept = [o for o in graph.graph.output if o.name != "prediction"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    onnx.save(graph, str(path))
    manifest = json.loads((directory / "manifest.json").read_text())
    for key in ("negative_keep_rate", "logit_shift", "calibration"):
        del manifest[key]
    manifest.update(format_version=1, onnx_sha256=sha256_file(path))
    (directory / "manifest.json").write_text(json.dumps(manifest))


def _as_format_2(source: Path, target: Path) -> Path:
    """A format-3 bundle rewritten in the format-2 layout: the weights inline in model.onnx,
    the vocabularies in manifest.json."""
    target.mkdir()
    onnx.save(onnx.load(str(source / "model.onnx")), str(target / "model.onnx"))
    manifest = json.loads((source / "manifest.json").read_text())
    fields = Manifest.read(source).fields
    for entry, spec in zip(manifest["fields"], fields, strict=True):
        entry["vocabulary"] = list(spec.vocabulary)
    for key in ("files", "vocabulary_sizes"):
        del manifest[key]
    manifest.update(format_version=2, onnx_sha256=sha256_file(target / "model.onnx"))
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_a_format_1_bundle_still_loads_and_predicts(tmp_path: Path, synthetic_afm: Path) -> None:
    binary = _binary_bundle(tmp_path, Serving("binary", (0.0, 1.0)), format_version=2)
    regression = _as_format_2(synthetic_afm, tmp_path / "regression")
    for directory in (binary.directory, regression):
        before = Bundle.load(directory)
        encoded = before.features.encode([{"f0": "a", "f1": "b"}, {"f0": "v1"}, {}])
        expected = before.run(encoded.indices, encoded.weights)
        _as_format_1(directory)
        old = Bundle.load(directory)
        assert old.manifest.format_version == 1
        assert [o.name for o in old._session.get_outputs()] == list(OUTPUT_NAMES[:4])
        got = old.run(encoded.indices, encoded.weights)
        np.testing.assert_allclose(got.score, expected.score, atol=1e-6)
        np.testing.assert_allclose(got.prediction, expected.prediction, atol=1e-6)
        assert got.prediction.dtype == np.float32


def test_a_format_1_manifest_cannot_claim_a_correction(tmp_path: Path) -> None:
    _binary_bundle(tmp_path, Serving("binary", (0.0, 1.0), 0.5), format_version=2)
    set_manifest(tmp_path / "bundle", format_version=1)
    with pytest.raises(BundleError, match="format_version 2"):
        Bundle.load(tmp_path / "bundle")
