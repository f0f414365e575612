"""afm-tune end to end on small generated data: trials, pruning, resume, the best config."""

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO
from training.cli import train_main
from training.config import load_config
from training.tune import main, to_toml

TUNE = """
[tune]
n_trials = 2
startup_trials = 1
warmup_epochs = 0

[tune.space]
"train.lr" = {low = 0.0003, high = 0.3, log = true}
"model.attention_dim" = {choices = [8, 32]}
"""
SMALL = ["data.synthetic.rows=2000", "train.epochs=3"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A search stopped after 2 trials, then resumed to 5: the summaries after each."""
    root = tmp_path_factory.mktemp("tune")
    config = root / "tune.toml"
    config.write_text((REPO / "configs" / "synthetic-afm.toml").read_text() + TUNE)
    out = root / "study"
    args = ["--config", str(config), "--out", str(out), *(f"--set={s}" for s in SMALL)]
    assert main(args) == 0
    first = json.loads((out / "summary.json").read_text())
    assert main([*args, "--set", "tune.n_trials=5"]) == 0
    return out, first, json.loads((out / "summary.json").read_text())


def _by_number(summary: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["trial"]: row for row in summary["trials"]}


def test_a_resumed_search_continues_to_n_trials_without_redoing_any(study: Any) -> None:
    out, first, final = study
    assert sorted(_by_number(first)) == [0, 1]
    assert sorted(_by_number(final)) == [0, 1, 2, 3, 4]
    for number in (0, 1):
        assert _by_number(final)[number] == _by_number(first)[number]
    assert all((out / f"trial-{k:04d}").is_dir() for k in range(5))


def test_trials_that_lag_the_median_are_pruned(study: Any) -> None:
    _, _, final = study
    states = [row["state"] for row in final["trials"]]
    assert "pruned" in states and states.count("complete") >= 2
    pruned = [row for row in final["trials"] if row["state"] == "pruned"]
    assert all(row["epochs"] < 3 for row in pruned)


def test_the_best_config_trains_with_afm_train_to_the_same_figure(study: Any, tmp_path: Path) -> None:
    out, _, final = study
    best = tomllib.loads((out / "best.toml").read_text())
    assert "tune" not in best and best["train"]["lr"] == final["best"]["params"]["train.lr"]
    assert train_main(["--config", str(out / "best.toml"), "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "manifest.json").read_text())["metrics"]
    assert metrics["rmse"] == final["best"]["value"]  # deterministic for a seed and thread count


def test_the_summary_names_the_best_trial_and_the_importances(study: Any) -> None:
    out, _, final = study
    assert set(final["importances"]) == {"train.lr", "model.attention_dim"}
    values = [row["value"] for row in final["trials"] if row["state"] == "complete"]
    assert final["best"]["value"] == min(values)
    assert f"Best: trial {final['best']['trial']}" in (out / "summary.md").read_text()


def test_afm_train_ignores_the_tune_section(tmp_path: Path) -> None:
    config = tmp_path / "tune.toml"
    config.write_text((REPO / "configs" / "synthetic-afm.toml").read_text() + TUNE)
    cfg = load_config(config)
    assert cfg.tune is not None and cfg.tune.n_trials == 2
    assert "tune" not in cfg.model_dump() and "tune" not in cfg.identity()


def test_configs_written_as_toml_read_back_unchanged() -> None:
    tree = {"name": "x", "seed": 3, "data": {"synthetic": {"planted": [[0, 1]], "noise": 1e-05},
                                             "fields": ["a b", "c\"d"]}, "train": {"flag": True}}
    assert tomllib.loads(to_toml(tree)) == tree
