"""train.compile: the same training under torch.compile, and checkpoints that load as usual."""

from pathlib import Path

import pytest
import torch

from tests.helpers import train_bundle
from training.run import load_checkpoint


@pytest.mark.slow
def test_a_compiled_fm_trains_like_an_eager_one(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    small = ["train.epochs=2", "data.synthetic.rows=3000", f"data.cache_dir={tmp_path / 'cache'}"]
    eager = train_bundle("synthetic-fm.toml", tmp_path / "eager", small)
    compiled = train_bundle("synthetic-fm.toml", tmp_path / "compiled", [*small, "train.compile=true"])
    assert compiled.metrics["rmse"] == pytest.approx(eager.metrics["rmse"], rel=1e-3)
    assert load_checkpoint(tmp_path / "compiled").config.kind == "fm"  # keys without _orig_mod.
