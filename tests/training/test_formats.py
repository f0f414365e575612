"""The registry of data formats: one table for afm-train (`prepare`) and afm-eval (`read`,
and the guess from a path), and every format through it, trained and evaluated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.training.test_cli import one_line_error
from training import formats
from training.cli import data_format, eval_main, train_main
from training.config import DataConfig
from training.criteo import synth
from training.errors import UsageError


def test_the_config_offers_exactly_the_trainable_formats() -> None:
    assert sorted(get_args(DataConfig.model_fields["format"].annotation)) == sorted(formats.trainable())
    assert "jsonl" in formats.readable() and "jsonl" not in formats.trainable()
    assert "synthetic" in formats.trainable() and "synthetic" not in formats.readable()


def test_formats_a_step_cannot_take_are_refused() -> None:
    with pytest.raises(UsageError, match="data format 'jsonl' is not for training: one of libfm"):
        formats.preparer("jsonl")
    with pytest.raises(UsageError, match="unknown data format 'synthetic': one of libfm, jsonl"):
        formats.reader("synthetic")


@pytest.mark.parametrize(("path", "expected"), [
    ("x/valid.libfm", "libfm"), ("x/rows.jsonl", "jsonl"), ("x/schema.TOML", "tabular"),
    ("x/part-0.parquet", "parquet"), ("s3://bucket/logs/part-0.snappy.parquet", "parquet"),
    ("x/train.txt", None), ("x/day.tsv", None),
])
def test_a_path_is_recognised_by_its_format(path: str, expected: str | None) -> None:
    assert formats.guess(path) == expected
    assert data_format(path, None) == (expected or formats.DEFAULT_READ)


def write_libfm(root: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 10, 600), rng.integers(10, 20, 600)
    lines = [f"{int((u + i) % 3 == 0)} {u}:1 {i}:1" for u, i in zip(users, items, strict=True)]
    (root / "train.libfm").write_text("\n".join(lines[:500]) + "\n")
    (root / "valid.libfm").write_text("\n".join(lines[500:]) + "\n")
    return {"train": str(root / "train.libfm"), "validation": str(root / "valid.libfm"),
            "eval": str(root / "valid.libfm")}


def write_tabular(root: Path) -> dict[str, str]:
    rng = np.random.default_rng(1)
    rows = [f"u{u}\ti{i}\t{int(u > i)}" for u, i in zip(rng.integers(0, 8, 400), rng.integers(0, 8, 400),
                                                        strict=True)]
    (root / "rows.tsv").write_text("user\titem\tclicked\n" + "\n".join(rows) + "\n")
    (root / "schema.toml").write_text('main = "rows.tsv"\ntarget = "clicked"\n'
                                      '[[fields]]\nname = "user"\nkind = "categorical"\n'
                                      '[[fields]]\nname = "item"\nkind = "categorical"\n')
    return {"train": str(root / "schema.toml"), "eval": str(root / "schema.toml")}


def write_synthetic(root: Path) -> dict[str, str]:
    rows = [{"instance": {"f0": "v1", "f1": "v2"}, "label": 1}, {"instance": {"f2": "v3"}, "label": 0}]
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"eval": str(root / "rows.jsonl"), "rows": "2"}


def write_criteo(root: Path) -> dict[str, str]:
    world = synth.World(scale=0.001)
    synth.write(root / "train.tsv", 1500, world, 0, chunk_rows=500)
    synth.write(root / "valid.tsv", 400, world, 1, chunk_rows=500)
    return {"train": str(root / "train.tsv"), "validation": str(root / "valid.tsv"),
            "eval": str(root / "valid.tsv")}


def write_parquet(root: Path) -> dict[str, str]:
    world = synth.World(scale=0.001)
    synth.write_parquet(root / "train", 1500, world, 0, days=2, chunk_rows=500)
    synth.write_parquet(root / "valid", 400, world, 1, days=1, chunk_rows=500)
    return {"train": str(root / "train"), "validation": str(root / "valid"), "eval": str(root / "valid")}


CASES: dict[str, tuple[Any, str, list[str]]] = {
    "libfm": (write_libfm, "synthetic-fm.toml", ["data.task=binary", "data.fields=['user', 'item']"]),
    "tabular": (write_tabular, "synthetic-fm.toml", ["data.task=binary"]),
    "synthetic": (write_synthetic, "synthetic-fm.toml", ["data.synthetic.rows=500"]),
    "criteo": (write_criteo, "criteo-fm.toml", ["data.min_count=3"]),
    "parquet": (write_parquet, "criteo-afm.toml", ["data.min_count=3", "model.attention_dim=4"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(CASES))
def test_every_format_trains_and_evaluates_through_the_registry(
        fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import REPO

    write, config, sets = CASES[fmt]
    paths = write(tmp_path)
    sets = [*sets, f"data.format={fmt}", f"data.cache_dir={tmp_path / 'cache'}", "train.epochs=1",
            "model.embed_dim=4", "train.compile=false", "train.pretrain=''",
            *(f"data.{split}={paths[split]}" for split in ("train", "validation") if split in paths)]
    argv = ["--config", str(REPO / "configs" / config), "--out", str(tmp_path / "run")]
    assert train_main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    guessed = [] if formats.guess(paths["eval"]) else ["--format", fmt]  # criteo: no suffix of its own
    assert eval_main(["--model", str(tmp_path / "run"), "--data", paths["eval"], *guessed]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    if fmt == "synthetic":  # nothing to read: rows for the model in the service's JSON form
        assert evaluated["rows"] == 2
        return
    for metric, value in trained["metrics"].items():
        assert evaluated[metric] == pytest.approx(value, abs=1e-5), metric


def test_afm_eval_takes_one_file_in_a_format_that_reads_one(
        bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"instance": {"f0": "v1"}, "label": 1}\n')
    line = one_line_error(eval_main, ["--model", str(bundle_dir), "--data", str(rows), str(rows)], capsys)
    assert line == f"afm-eval: --format jsonl reads one file, got 2: {rows} {rows}"


def test_a_parquet_file_is_read_through_the_registry(tmp_path: Path) -> None:
    write_parquet(tmp_path)
    part = next((tmp_path / "valid").glob("day=*/part-00000.parquet"))
    assert pq.read_metadata(part).num_rows == 400
    data = DataConfig.model_validate({"format": "parquet", "train": str(tmp_path / "train"),
                                      "validation": str(part), "task": "binary", "min_count": 3})
    prepared = formats.preparer("parquet")(data, tmp_path / "cache", None)
    assert (len(prepared.train), len(prepared.validation)) == (1500, 400)
    assert prepared.fingerprints["validation"].path == str(part)
