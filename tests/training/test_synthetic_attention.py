"""On data where only planted field pairs interact, AFM finds them and beats FM."""

import json
from pathlib import Path

from model.manifest import Manifest
from training.synthetic import SyntheticSpec


def _planted_mass(bundle: Path) -> float:
    manifest = Manifest.read(bundle)
    planted = set(SyntheticSpec().planted_names())
    total = sum(p.mean_attention for p in manifest.importance)
    return sum(p.mean_attention for p in manifest.importance if p.fields in planted) / total


def test_afm_puts_most_attention_on_planted_pairs(synthetic_afm: Path) -> None:
    assert _planted_mass(synthetic_afm) >= 0.80


def test_fm_attention_is_uniform_by_construction(synthetic_fm: Path) -> None:
    assert abs(_planted_mass(synthetic_fm) - 3 / 15) < 1e-6


def test_afm_beats_fm_on_planted_interactions(synthetic_afm: Path, synthetic_fm: Path) -> None:
    afm_rmse = Manifest.read(synthetic_afm).metrics["rmse"]
    fm_rmse = Manifest.read(synthetic_fm).metrics["rmse"]
    assert afm_rmse < 0.5 * fm_rmse


def test_run_writes_history_plots_and_checkpoint(synthetic_afm: Path) -> None:
    history = json.loads((synthetic_afm / "history.json").read_text())
    assert history["best_epoch"] >= 1 and len(history["epochs"]) >= history["best_epoch"]
    assert {"train_loss", "validation_rmse", "samples_per_second"} <= set(history["epochs"][0])
    for name in ("checkpoint.pt", "learning_curves.png", "attention_heatmap.png", "model.onnx"):
        assert (synthetic_afm / name).stat().st_size > 0
