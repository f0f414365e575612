"""The pretraining protocol's options: an AFM that starts from its FM with uniform attention
and the FM's part frozen scores as that FM did."""

from pathlib import Path

import pytest

from tests.helpers import train_bundle

DATA = ["data.synthetic.rows=4000"]


def test_a_frozen_uniform_start_scores_as_the_fm(tmp_path: Path) -> None:
    fm = train_bundle("synthetic-fm.toml", tmp_path / "fm", [*DATA, "train.epochs=8"])
    start = [*DATA, "train.epochs=1", f"train.init_from={tmp_path / 'fm'}",
             "train.freeze_pretrained_epochs=1", "train.attention_lr=1e-12"]
    uniform = train_bundle("synthetic-afm.toml", tmp_path / "uniform", [*start, "train.uniform_start=true"])
    random = train_bundle("synthetic-afm.toml", tmp_path / "random", start)
    assert uniform.metrics["rmse"] == pytest.approx(fm.metrics["rmse"], rel=1e-5)
    assert abs(random.metrics["rmse"] - fm.metrics["rmse"]) > 2e-5  # a random attention network moves it


def test_an_afm_from_scratch_with_uniform_start_trains_as_an_fm_until_its_attention_learns(
        tmp_path: Path) -> None:
    fm = train_bundle("synthetic-fm.toml", tmp_path / "fm", [*DATA, "train.epochs=3"])
    still = [*DATA, "train.epochs=3", "train.uniform_start=true", "train.attention_lr=1e-12"]
    afm = train_bundle("synthetic-afm.toml", tmp_path / "afm", still)
    learning = train_bundle("synthetic-afm.toml", tmp_path / "learning",
                            [*DATA, "train.epochs=3", "train.uniform_start=true"])
    assert afm.metrics["rmse"] == pytest.approx(fm.metrics["rmse"], rel=1e-4)
    assert abs(learning.metrics["rmse"] - fm.metrics["rmse"]) > 1e-3
