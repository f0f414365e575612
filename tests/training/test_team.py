"""Preprocessing shared out among ranks and worker processes: the same log and settings give
the same cache, byte for byte, whoever prepares it."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import REPO
from tests.training.test_cli import one_line_error
from tests.training.test_criteo import generate
from tests.training.test_parquet import criteo_config, criteo_logs
from training import formats, shards
from training.cli import train_main
from training.config import load_config
from training.data import Prepared
from training.run import prepare_data
from training.stream import passes
from training.stream.team import Team

PIECE = 1 << 16  # the smallest piece: a 3,000-row log is cut in 12
CONFIG = str(REPO / "configs" / "criteo-fm.toml")


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("log")
    return {"train": generate(root / "train.tsv", 3000), "validation": generate(root / "valid.tsv", 600, 1)}


def settings(log: dict[str, Path], cache: Path, piece_bytes: int = PIECE) -> list[str]:
    """The data settings as `--set` overrides: negatives downsampled, so that the rows kept
    depend on every row's ordinal."""
    return [f"data.train={log['train']}", f"data.validation={log['validation']}", f"data.cache_dir={cache}",
            "data.min_count=3", "data.negative_keep_rate=0.5", "data.criteo.rows_per_shard=500",
            f"data.criteo.piece_bytes={piece_bytes}"]


def prepare(log: dict[str, Path], cache: Path, workers: int = 1, piece_bytes: int = PIECE) -> Prepared:
    """As `afm-train --prepare-only` prepares the log, in this process (and its workers)."""
    cfg = load_config(CONFIG, [*settings(log, cache, piece_bytes), f"data.workers={workers}"])
    return prepare_data(cfg)


def files(cache: Path) -> dict[str, bytes]:
    """Every file of the cache's shard sets (and their keys), by path."""
    return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*"))
            if p.is_file() and (p.suffix == ".npy" or p.parent.joinpath("index.json").is_file())}


@pytest.mark.slow  # starts worker processes (and torchrun)
def test_one_process_two_workers_and_two_ranks_write_the_same_cache(log: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    alone = prepare(log, tmp_path / "alone")
    workers = prepare(log, tmp_path / "workers", workers=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    overrides = [a for s in settings(log, tmp_path / "ranks") for a in ("--set", s)]
    ranks = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
         "training.cli", "--config", CONFIG, "--out", str(tmp_path / "unused"), *overrides,
         "--prepare-only"], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    assert ranks.stdout.count('"train"') == 1  # rank 0 reports
    assert "12 pieces, 2 processes" in ranks.stderr

    assert len(alone.train.sizes) >= 12 and alone.train.downsampling.negatives_after < 2500
    expected = files(tmp_path / "alone")
    assert expected and files(tmp_path / "workers") == expected
    assert files(tmp_path / "ranks") == expected
    # the shard sets' keys hold the digest of the feature space they were encoded with
    assert [f.model_dump_json() for f in workers.space.fields] == [
        f.model_dump_json() for f in alone.space.fields]
    counts = [p for p in (tmp_path / "ranks").iterdir() if (p / "stats.json").is_file()]
    assert len(counts) == 1 and json.loads((counts[0] / "stats.json").read_text())["rows"] == 3000
    for cache in ("alone", "workers", "ranks"):  # no pieces or half-built directories left
        assert not [p.name for p in (tmp_path / cache).iterdir() if p.name.startswith(".")]


def test_pieces_change_where_shards_end_not_the_rows(log: dict[str, Path], tmp_path: Path) -> None:
    whole = prepare(log, tmp_path / "whole", piece_bytes=1 << 30)
    cut = prepare(log, tmp_path / "cut")
    assert whole.space.fields == cut.space.fields and whole.fingerprints == cut.fingerprints
    assert len(whole.validation.sizes) < len(cut.validation.sizes)
    one, many = whole.validation.read(0, 600), cut.validation.read(0, 600)  # every row kept
    assert np.array_equal(one.indices, many.indices) and np.array_equal(one.labels, many.labels)


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two"])
def test_bad_workers_are_a_one_line_error(value: str, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    error = one_line_error(train_main, ["--config", CONFIG, "--out", str(tmp_path), "--set",
                                        f"data.workers={value}", "--prepare-only"], capsys)
    assert "data.workers" in error


def test_workers_do_not_change_what_a_checkpoint_resumes() -> None:
    one, two = (load_config(CONFIG, [f"data.workers={n}"]) for n in (1, 2))
    assert one.identity() == two.identity()


@pytest.mark.slow  # starts worker processes (and torchrun)
def test_parquet_row_groups_are_pieces_and_give_the_text_logs_rows(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    paths = criteo_logs(tmp_path / "logs")

    def prepare_table(cache: Path, workers: int) -> Prepared:
        data = criteo_config(paths, "parquet", cache)
        data = data.model_copy(update={"parquet": data.parquet.model_copy(update={"piece_rows": 300})})
        return formats.preparer("parquet")(data, cache, None, 0, Team(workers=workers))

    alone, workers = prepare_table(tmp_path / "alone", 1), prepare_table(tmp_path / "workers", 2)
    assert files(tmp_path / "workers") == files(tmp_path / "alone")
    assert len(alone.train.sizes) > 3  # more pieces than the 3 day files
    text_cache = tmp_path / "text"
    text = formats.preparer("criteo")(criteo_config(paths, "criteo", text_cache), text_cache, None)
    assert len(text.train.sizes) < len(alone.train.sizes)
    assert [f.model_dump() for f in workers.space.fields] == [f.model_dump() for f in text.space.fields]
    for split in ("train", "validation"):
        a, b = getattr(text, split), getattr(alone, split)
        assert np.array_equal(a.read(0, len(a)).indices, b.read(0, len(b)).indices)


def test_a_killed_preparation_keeps_its_finished_pieces(log: dict[str, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    encode = passes._EncodePiece.__call__
    done: list[int] = []

    def killed_at_the_fourth(self: passes._EncodePiece, k: int) -> None:
        if len(done) == 3:
            raise KeyboardInterrupt
        encode(self, k)
        done.append(k)

    monkeypatch.setattr(passes._EncodePiece, "__call__", killed_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        prepare(log, tmp_path / "killed")
    kept = [p.name for p in (tmp_path / "killed").glob(".*.pieces/*") if not p.name.startswith(".")]
    assert sorted(kept) == ["00000", "00001", "00002"]

    monkeypatch.setattr(passes._EncodePiece, "__call__", encode)
    writer, written = shards.ShardWriter.__init__, []

    def counted(self: shards.ShardWriter, directory: Path, *args: Any, **kwargs: Any) -> None:
        written.append(directory)
        writer(self, directory, *args, **kwargs)

    monkeypatch.setattr(shards.ShardWriter, "__init__", counted)
    prepare(log, tmp_path / "killed")
    assert len(written) == 12 + 3 - 3  # the 12 train pieces and 3 validation pieces, less 3 kept
    prepare(log, tmp_path / "fresh")
    assert files(tmp_path / "killed") == files(tmp_path / "fresh")
