"""`--set` overrides: which reach the pretraining FM of the paper protocol, and which do not."""

from pathlib import Path

from tests.helpers import REPO
from training.config import load_config

AFM = REPO / "configs" / "frappe-afm.toml"


def _pretrain(overrides: list[str]):  # type: ignore[no-untyped-def]
    cfg = load_config(AFM, overrides)
    return cfg, load_config(Path(cfg.source).parent / cfg.train.pretrain, cfg.pretrain_overrides())


def test_overrides_that_shape_the_run_reach_the_pretraining_fm() -> None:
    afm, fm = _pretrain(["train.epochs=1", "model.embed_dim=16", "seed=3", "data.min_count=2"])
    assert (afm.train.epochs, fm.train.epochs) == (1, 1)
    assert (afm.model.embed_dim, fm.model.embed_dim) == (16, 16)  # the FM's table must fit the AFM
    assert (fm.seed, fm.data.min_count) == (3, 2)


def test_model_and_optimiser_overrides_stay_with_the_afm_and_pretrain_keys_with_the_fm() -> None:
    base_fm = load_config(REPO / "configs" / "frappe-fm.toml")
    afm, fm = _pretrain(["train.lr=0.05", "model.pair_dropout=0.1", "pretrain.train.lr=0.003",
                         "pretrain.train.epochs=2"])
    assert (afm.train.lr, afm.model.pair_dropout) == (0.05, 0.1)
    assert (fm.train.lr, fm.train.epochs) == (0.003, 2)
    assert fm.model.pair_dropout == base_fm.model.pair_dropout
    assert afm.train.epochs == load_config(AFM).train.epochs  # pretrain.* is the FM's alone
