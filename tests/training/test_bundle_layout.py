"""Format 3: the weights beside the graph, the vocabularies in a mapped file, each file
verified; format 2 bundles keep loading and score the same."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model.bundle import Bundle, BundleError
from model.features import FeatureSpace
from model.impression_columns import FeatureColumns
from model.manifest import ONNX_DATA_FILE, Manifest
from model.vocabulary import VOCABULARY_FILE, MappedVocabulary
from tests.helpers.bundles import set_manifest
from tests.training.test_export import _as_format_2, _tiny_model
from training.export import Serving, TableDtype, export_onnx

INSTANCES = [{"f0": "v1", "f1": "v2", "f2": "v3"}, {"f0": "nope"}, {}]


@pytest.fixture
def bundle_copy(synthetic_afm: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(synthetic_afm, tmp_path / "bundle"))


def test_a_bundle_keeps_weights_and_vocabularies_out_of_its_json_files(synthetic_afm: Path) -> None:
    names = {p.name for p in synthetic_afm.iterdir()}
    assert {"model.onnx", ONNX_DATA_FILE, VOCABULARY_FILE, "manifest.json"} <= names
    raw = json.loads((synthetic_afm / "manifest.json").read_text())
    assert raw["format_version"] == 3
    assert all("vocabulary" not in field for field in raw["fields"])
    assert set(raw["files"]) == {ONNX_DATA_FILE, VOCABULARY_FILE}
    graph = onnx.load(str(synthetic_afm / "model.onnx"), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer)
    modes = {(synthetic_afm / name).stat().st_mode for name in names}
    assert len(modes) == 1  # readable by whoever may read the graph
    manifest = Manifest.read(synthetic_afm)
    assert [len(f.vocabulary) for f in manifest.fields] == raw["vocabulary_sizes"]


@pytest.mark.parametrize("name", [ONNX_DATA_FILE, VOCABULARY_FILE])
def test_a_changed_or_missing_file_is_refused(bundle_copy: Path, name: str) -> None:
    path = bundle_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name} sha256 .* does not match"):
        Bundle.load(bundle_copy)
    path.unlink()
    with pytest.raises(BundleError, match=f"{name} is missing"):
        Bundle.load(bundle_copy)


def test_a_manifest_must_name_its_vocabulary_file(bundle_copy: Path) -> None:
    set_manifest(bundle_copy, files={})
    with pytest.raises(BundleError, match=VOCABULARY_FILE):
        Bundle.load(bundle_copy)


def test_sizes_that_disagree_with_the_vocabulary_file_are_refused(bundle_copy: Path) -> None:
    sizes = json.loads((bundle_copy / "manifest.json").read_text())["vocabulary_sizes"]
    set_manifest(bundle_copy, vocabulary_sizes=[sizes[0] + 1, *sizes[1:]])
    with pytest.raises(BundleError, match="the manifest says"):
        Bundle.load(bundle_copy)


def test_format_2_and_format_3_score_and_name_the_same(synthetic_afm: Path, tmp_path: Path) -> None:
    new = Bundle.load(synthetic_afm)
    old = Bundle.load(_as_format_2(synthetic_afm, tmp_path / "old"))
    assert old.manifest.format_version == 2 and new.manifest.format_version == 3
    encoded = new.features.encode(INSTANCES)
    np.testing.assert_array_equal(encoded.indices, old.features.encode(INSTANCES).indices)
    np.testing.assert_allclose(new.run(encoded.indices, encoded.weights).score,
                               old.run(encoded.indices, encoded.weights).score, atol=1e-6)
    assert new.manifest.digest != new.manifest.onnx_sha256
    assert old.manifest.digest == old.manifest.onnx_sha256


@pytest.fixture
def spaces(synthetic_afm: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FeatureSpace, FeatureSpace]:
    """The bundle's feature space with its vocabularies as lists, and as mapped files (every
    vocabulary of 2 values or more mapped)."""
    listed = Bundle.load(synthetic_afm).features
    monkeypatch.setattr("model.vocabulary.MAPPED_FROM", 2)
    return listed, Bundle.load(synthetic_afm).features


def test_large_vocabularies_are_mapped_and_answer_as_lists_do(
    spaces: tuple[FeatureSpace, FeatureSpace],
) -> None:
    listed, mapped = spaces
    assert mapped.mapped and not listed.mapped
    assert all(isinstance(f.vocabulary, MappedVocabulary) for f in mapped.fields)
    encoded, expected = mapped.encode(INSTANCES), listed.encode(INSTANCES)
    np.testing.assert_array_equal(encoded.indices, expected.indices)
    assert encoded.oov == expected.oov
    every = np.arange(listed.num_features)
    assert mapped.names(every).tolist() == listed.value_names.tolist()
    assert list(mapped.name_list()) == listed.value_names.tolist()
    for position, spec in enumerate(listed.fields):
        assert list(mapped.fields[position].known) == list(spec.known)
        assert mapped.index_of(position, spec.known[-1]) == listed.index_of(position, spec.known[-1])


def test_a_mapped_field_answers_recent_values_from_a_bounded_cache(
    synthetic_afm: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed = Bundle.load(synthetic_afm).features
    monkeypatch.setattr("model.vocabulary.MAPPED_FROM", 2)
    monkeypatch.setattr("model.features.MAPPED_CACHE_SIZE", 2)
    mapped = Bundle.load(synthetic_afm).features
    looked_up: list[str] = []
    position = MappedVocabulary.position

    def counted(self: MappedVocabulary, value: str) -> int | None:
        looked_up.append(value)
        return position(self, value)

    monkeypatch.setattr(MappedVocabulary, "position", counted)
    instances = [{"f0": "v1"}, {"f0": "v1"}, {"f0": "nope"}, {"f0": "nope"}, {"f0": "v2"},
                 {"f0": "v3"}, {"f0": "v1"}]
    encoded, expected = mapped.encode(instances), listed.encode(instances)
    np.testing.assert_array_equal(encoded.indices, expected.indices)
    assert encoded.oov == expected.oov
    assert looked_up == ["v1", "nope", "v2", "v3", "v1"]  # two values kept: v1 was dropped


def test_a_float16_table_halves_the_table_and_scores_as_float32(tmp_path: Path) -> None:
    model, space, data = _tiny_model()
    serving = Serving("binary", (0.0, 1.0))
    sizes, scores = {}, {}
    dtypes: tuple[TableDtype, ...] = ("float32", "float16")
    for dtype in dtypes:
        (tmp_path / dtype).mkdir()
        export_onnx(model, space, tmp_path / dtype / "model.onnx", serving, table_dtype=dtype)
        graph = onnx.load(str(tmp_path / dtype / "model.onnx"), load_external_data=False)
        sizes[dtype] = (tmp_path / dtype / ONNX_DATA_FILE).stat().st_size
        session = ort.InferenceSession(str(tmp_path / dtype / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        scores[dtype] = session.run(["score"], {"indices": data.indices, "weights": data.weights})[0]
        kinds = {t.name: t.data_type for t in graph.graph.initializer}
        assert (onnx.TensorProto.FLOAT16 in kinds.values()) == (dtype == "float16")
    table = space.num_features * 4 * 2  # the table's float32 bytes, halved
    assert sizes["float32"] - sizes["float16"] == table
    np.testing.assert_allclose(scores["float16"], scores["float32"], atol=1e-2)
    assert isinstance(model.embedding.embedding, torch.nn.Embedding)  # restored after export


def test_the_impression_columns_read_a_mapped_vocabulary_as_a_list(
    spaces: tuple[FeatureSpace, FeatureSpace],
) -> None:
    listed, mapped = spaces
    encoded = listed.encode(INSTANCES)
    got = FeatureColumns(mapped).of_tensors(encoded.indices, encoded.weights)
    expected = FeatureColumns(listed).of_tensors(encoded.indices, encoded.weights)
    assert got[0].equals(expected[0]) and got[1] == expected[1]
