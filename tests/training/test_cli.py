"""afm-train and afm-eval end to end on small libFM files."""

import json
from pathlib import Path

import numpy as np
import pytest

from model.manifest import Manifest
from training.cli import eval_main, train_main


def _libfm_files(directory: Path, rows: int = 3000) -> tuple[Path, Path]:
    """Three fields; the label depends on the (user, item) pair only."""
    rng = np.random.default_rng(3)
    users, items, ctx = rng.integers(0, 20, rows), rng.integers(20, 40, rows), rng.integers(40, 44, rows)
    labels = np.where((users + items) % 3 == 0, 1, -1)
    lines = [f"{y} {u}:1 {i}:1 {c}:1" for y, u, i, c in zip(labels, users, items, ctx, strict=True)]
    cut = int(rows * 0.8)
    train, valid = directory / "train.libfm", directory / "valid.libfm"
    train.write_text("\r\n".join(lines[:cut]) + "\r\n")
    valid.write_text("\r\n".join(lines[cut:]) + "\r\n")
    return train, valid


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_train_then_eval_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str], task: str) -> None:
    train, valid = _libfm_files(tmp_path)
    config = tmp_path / "run.toml"
    config.write_text(f"""
name = "tiny"
[data]
format = "libfm"
train = "{train}"
validation = "{valid}"
fields = ["user", "item", "context"]
task = "{task}"
[model]
embed_dim = 8
[train]
optimizer = "adam"
lr = 0.01
batch_size = 256
epochs = 3
""")
    out = tmp_path / "bundle"
    assert train_main(["--config", str(config), "--out", str(out), "--set", "model.pair_dropout=0.1"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = Manifest.read(out)
    assert manifest.training["model"]["pair_dropout"] == 0.1
    assert trained["metrics"] == manifest.metrics

    scores = tmp_path / "scores.txt"
    assert eval_main(["--model", str(out), "--data", str(valid), "--scores", str(scores)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["rows"] == 600 and len(np.loadtxt(scores)) == 600
    for metric, value in manifest.metrics.items():
        assert evaluated[metric] == pytest.approx(value, abs=1e-5)


def test_eval_reads_json_lines(
    synthetic_afm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(
        '{"instance": {"f0": "v1", "f1": "v2"}, "label": 0.5}\n'
        '{"instance": {"f0": "unseen", "f3": "v4"}, "label": -0.2}\n'
    )
    assert eval_main(["--model", str(synthetic_afm), "--data", str(data), "--format", "jsonl"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 2 and result["oov"] == 1 and result["rmse"] >= 0


def test_bad_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="key=value"):
        train_main(["--config", "configs/synthetic-afm.toml", "--out", str(tmp_path), "--set", "oops"])
