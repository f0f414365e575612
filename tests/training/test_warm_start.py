"""Starting from a previous model: known values keep their vectors, new values are added."""

from pathlib import Path

import numpy as np
import pytest
import torch

from model.afm import AFM, FM, ModelConfig, init_from_fm
from model.features import FeatureSpace, FieldKind, FieldSpec
from model.manifest import Manifest
from tests.helpers import train_bundle
from training.criteo.synth import World, write
from training.run import load_checkpoint
from training.warm_start import index_mapping, warm_start


def _space(a: list[str], b: list[str]) -> FeatureSpace:
    return FeatureSpace([FieldSpec(name="a", kind=FieldKind.CATEGORICAL, vocabulary=a),
                         FieldSpec(name="b", kind=FieldKind.CATEGORICAL, vocabulary=b, missing="learned")])


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()
    return model


def test_index_mapping_follows_value_names() -> None:
    old, new = _space(["x", "y", "z"], ["p"]), _space(["z", "w", "x"], ["q", "p"])
    mapping = index_mapping(old, new)
    assert mapping[0] == 0
    assert mapping[old.oov_index(0)] == new.oov_index(0)
    assert mapping[old.index_of(0, "x")] == new.index_of(0, "x")
    assert mapping[old.index_of(0, "z")] == new.index_of(0, "z")
    assert mapping[old.index_of(0, "y")] == -1  # no longer in the vocabulary
    assert mapping[old.index_of(1, "p")] == new.index_of(1, "p")
    assert mapping[old.missing_index(1)] == new.missing_index(1)


def test_warm_start_copies_known_rows_and_leaves_new_rows_fresh() -> None:
    old, new = _space(["x", "y", "z"], ["p"]), _space(["z", "w", "x"], ["q", "p"])
    previous = _randomised(AFM(ModelConfig(kind="afm", num_features=old.num_features, num_fields=2,
                                           embed_dim=4, attention_dim=3)))
    model = AFM(ModelConfig(kind="afm", num_features=new.num_features, num_fields=2, embed_dim=4,
                            attention_dim=3))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    mapping = index_mapping(old, new)
    warm_start(model, previous, mapping)  # type: ignore[arg-type]
    before, after = previous.state_dict(), model.state_dict()
    for name in ("embedding.embedding.weight", "linear.weight.weight"):
        kept = mapping >= 0
        torch.testing.assert_close(after[name][mapping[kept]], before[name][np.flatnonzero(kept)])
        new_rows = [new.index_of(0, "w"), new.index_of(1, "q")]
        torch.testing.assert_close(after[name][new_rows], fresh[name][new_rows])
    torch.testing.assert_close(after["p"], before["p"])
    torch.testing.assert_close(after["linear.bias"], before["linear.bias"])


def test_an_afm_from_an_fm_on_one_space_is_the_paper_protocol() -> None:
    space = _space(["x", "y"], ["p"])
    config = dict(num_features=space.num_features, num_fields=2, embed_dim=4)
    fm = _randomised(FM(ModelConfig(kind="fm", **config)))  # type: ignore[arg-type]
    warmed = AFM(ModelConfig(kind="afm", **config))  # type: ignore[arg-type]
    expected = AFM(ModelConfig(kind="afm", **config))  # type: ignore[arg-type]
    expected.load_state_dict(warmed.state_dict())
    warm_start(warmed, fm, index_mapping(space, space))  # type: ignore[arg-type]
    init_from_fm(expected, fm)  # type: ignore[arg-type]
    for name, value in expected.state_dict().items():
        torch.testing.assert_close(warmed.state_dict()[name], value)


@pytest.mark.slow
def test_a_new_day_grows_the_vocabulary_and_starts_from_yesterday(tmp_path: Path) -> None:
    world = World(scale=0.0005)
    for day, seed in (("day1", 1), ("day2", 2), ("valid", 3)):
        write(tmp_path / f"{day}.tsv", 3000, world, seed)
    common = [f"data.validation={tmp_path / 'valid.tsv'}", f"data.cache_dir={tmp_path / 'cache'}",
              "data.min_count=2", "train.epochs=2", "train.batch_size=256", "train.compile=false"]
    train_bundle("criteo-fm.toml", tmp_path / "run1", [f"data.train={tmp_path / 'day1.tsv'}", *common])
    train_bundle("criteo-fm.toml", tmp_path / "run2", [
        f"data.train={tmp_path / 'day2.tsv'}", f"train.init_from={tmp_path / 'run1'}",
        "data.criteo.keep_dropped=true", "train.lr=1e-9", *common,
    ])
    old = Manifest.read(tmp_path / "run1").feature_space()
    new = Manifest.read(tmp_path / "run2").feature_space()
    assert new.num_features > old.num_features  # day 2 brought values day 1 did not have
    mapping = index_mapping(old, new)
    categorical = np.concatenate([
        old.offsets[p] + 1 + np.arange(len(spec.known))
        for p, spec in enumerate(old.fields) if spec.kind == FieldKind.CATEGORICAL
    ])
    assert (mapping[categorical] > 0).all()  # every value of yesterday's vocabulary is kept
    kept = np.flatnonzero(mapping > 0)
    before = load_checkpoint(tmp_path / "run1").state_dict()["embedding.embedding.weight"]
    after = load_checkpoint(tmp_path / "run2").state_dict()["embedding.embedding.weight"]
    torch.testing.assert_close(after[mapping[kept]], before[kept], atol=1e-5, rtol=0)
