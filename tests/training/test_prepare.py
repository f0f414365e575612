"""Data reaches training once: encoded into the cache, then reused by every later run."""

import json
from pathlib import Path

import pytest

from tests.helpers import REPO
from training.cli import train_main
from training.shards import Shards

CONFIG = str(REPO / "configs" / "synthetic-afm.toml")


def test_prepare_only_encodes_into_the_cache_and_later_runs_reuse_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--config", CONFIG, "--out", str(tmp_path / "run"), "--set", f"data.cache_dir={tmp_path}",
            "--set", "data.synthetic.rows=2000", "--prepare-only"]
    assert train_main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["train_rows"], first["validation_rows"]) == (1600, 400)
    assert len(Shards.open(Path(first["train"]))) == 1600
    stamp = (Path(first["train"]) / "index.json").stat().st_mtime_ns
    assert train_main(args) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert (Path(first["train"]) / "index.json").stat().st_mtime_ns == stamp
    assert not (tmp_path / "run").exists()  # nothing trained
    assert train_main([*args[:-1], "--set", "data.synthetic.seed=8", "--prepare-only"]) == 0
    assert json.loads(capsys.readouterr().out)["train"] != first["train"]
