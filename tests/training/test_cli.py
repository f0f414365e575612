"""afm-train and afm-eval end to end on small libFM files."""

import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model.manifest import Manifest
from tests.helpers import REPO
from training.cli import data_format, eval_main, train_main
from training.numerics import denormals_flushed


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
def test_train_then_eval_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               caplog: pytest.LogCaptureFixture, task: str) -> None:
    caplog.set_level(logging.INFO)
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
    assert manifest.training["flush_denormal"] is True
    assert not denormals_flushed()  # the process's switch as it was: others here need denormals
    assert trained["metrics"] == manifest.metrics
    assert re.search(r"parameters, (1 thread|[2-9]\d* threads)$", caplog.text, re.MULTILINE)

    scores = tmp_path / "scores.txt"
    assert eval_main(["--model", str(out), "--data", str(valid), "--scores", str(scores)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["rows"] == 600 and len(np.loadtxt(scores)) == 600
    for metric, value in manifest.metrics.items():
        assert evaluated[metric] == pytest.approx(value, abs=1e-5)
    if task == "binary":  # NE and calibration of the served probabilities, by hand
        assert list(evaluated) == ["rows", "oov", "auc", "logloss", "ne", "calibration"]
        assert manifest.calibration.kind == "isotonic"  # "auto", with every validation row
        labels = np.array([line.split()[0] == "1" for line in valid.read_text().splitlines()])
        p, rate = manifest.calibration.probability(np.loadtxt(scores)), labels.mean()
        assert evaluated["calibration"] == pytest.approx(p.mean() / rate, rel=1e-5)
        entropy = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
        assert evaluated["ne"] == pytest.approx(evaluated["logloss"] / entropy, rel=1e-6)


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


def one_line_error(main: Callable[[list[str]], int], argv: list[str],
                   capsys: pytest.CaptureFixture[str]) -> str:
    """Run a CLI that must refuse its input: exit status 2 and one line on stderr."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


SYNTHETIC = str(REPO / "configs" / "synthetic-afm.toml")


@pytest.mark.parametrize(("argv", "expected"), [
    (["--config", "nope.toml"], "afm-train: no config file nope.toml: --config takes a TOML run config"),
    (["--config", SYNTHETIC, "--set", "oops"], "override must look like key=value, got 'oops'"),
    (["--config", SYNTHETIC, "--set", "train.epohcs=3"],
     "unknown key 'train.epohcs' (did you mean 'train.epochs'?)"),
    (["--config", SYNTHETIC, "--set", "train.epochs=0"], "train.epochs must be at least 1, got 0"),
    (["--config", SYNTHETIC, "--set", "data.format=csv"], "data.format must be 'libfm'"),
    (["--config", SYNTHETIC, "--set", "data.task=binary", "--set", "data.negative_keep_rate=0"],
     "data.negative_keep_rate must be greater than 0.0, got 0"),
    (["--config", SYNTHETIC, "--set", "data.task=binary", "--set", "data.negative_keep_rate=1.5"],
     "data.negative_keep_rate must be at most 1.0, got 1.5"),
    (["--config", SYNTHETIC, "--set", "data.negative_keep_rate=0.5"],
     "negative_keep_rate applies to binary tasks only, not regression"),
    (["--config", SYNTHETIC, "--set", "train.calibration=platt"],
     "train.calibration applies to binary tasks only"),
    (["--config", SYNTHETIC, "--set", "data.task=binary", "--set", "train.calibration=isotonic",
      "--set", "data.validation_negative_keep_rate=0.5"], "keep all of them"),
    (["--config", SYNTHETIC, "--set", "train.sparse_tables=sometimes"], "train.sparse_tables"),
    (["--config", SYNTHETIC, "--set", "train.sparse_tables=true", "--set", "train.l2_scope=table",
      "--set", "train.embedding_l2=0.01"], "sparse_tables = true needs l2_scope = 'batch'"),
])
def test_train_refuses_a_bad_config_in_one_line(
    argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(train_main, [*argv, "--out", str(tmp_path / "run")], capsys)
    assert line.startswith("afm-train: ") and expected in line
    assert not (tmp_path / "run").exists()


def test_train_config_file_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("name = \n")
    line = one_line_error(train_main, ["--config", str(config), "--out", str(tmp_path / "run")], capsys)
    assert line.startswith(f"afm-train: config {config}: ")


def test_eval_refuses_a_missing_or_broken_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "rows.libfm"
    data.write_text("1 1:1 2:1\n")
    line = one_line_error(eval_main, ["--model", str(tmp_path / "none"), "--data", str(data)], capsys)
    assert line.startswith(f"afm-eval: no bundle directory {tmp_path / 'none'}: --model takes")
    line = one_line_error(eval_main, ["--model", str(tmp_path), "--data", str(data)], capsys)
    assert "manifest.json is missing" in line and "--model takes the --out directory" in line


def test_eval_refuses_data_that_does_not_fit_the_model(
    bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "three-fields.libfm"
    data.write_text("1 1:1 2:1 3:1\n0 4:1 5:1 6:1\n")
    line = one_line_error(eval_main, ["--model", str(bundle_dir), "--data", str(data)], capsys)
    assert line == (f"afm-eval: {data}: rows hold 3 fields, the model takes 6: "
                    "is this the data the model was trained on?")
    missing = tmp_path / "missing.libfm"
    line = one_line_error(eval_main, ["--model", str(bundle_dir), "--data", str(missing)], capsys)
    assert line == f"afm-eval: cannot read {missing}: No such file or directory"
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"instance": {"f0": "v1"}, "label": 1}\n{"instance": {}}\n')
    line = one_line_error(eval_main, ["--model", str(bundle_dir), "--data", str(rows)], capsys)
    assert line.startswith(f"afm-eval: {rows} line 2: each line must be")


def test_eval_tells_a_schema_from_its_suffix(bundle_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    schema = tmp_path / "schema.toml"
    schema.write_text('main = "rows.tsv"\n')
    assert data_format(str(schema), None) == "tabular"
    assert data_format("x/valid.libfm", None) == "libfm" and data_format("x.jsonl", None) == "jsonl"
    assert data_format("x/ratings.txt", None) == "libfm"
    line = one_line_error(eval_main, ["--model", str(bundle_dir), "--data", str(schema),
                                      "--format", "libfm"], capsys)
    assert line == (f"afm-eval: {schema} is a TOML file, i.e. a tabular schema: use --format "
                    "tabular (or leave --format out)")


@pytest.mark.slow
def test_cli_errors_print_no_traceback_unless_debug(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "training.cli", "--config", "nope.toml", "--out", str(tmp_path)]
    plain = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [
        "afm-train: no config file nope.toml: --config takes a TOML run config, e.g. "
        "configs/synthetic-afm.toml"]
    debug = subprocess.run([*command, "--debug"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "UsageError" in debug.stderr


def test_a_place_training_cannot_write_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    argv = ["--config", SYNTHETIC, "--set", f"data.cache_dir={blocked / 'cache'}",
            "--out", str(tmp_path / "run")]
    line = one_line_error(train_main, argv, capsys)
    assert line.startswith(f"afm-train: cannot use {blocked}/cache") and "Not a directory" in line
