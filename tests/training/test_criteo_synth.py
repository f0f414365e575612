"""The synthetic Criteo-format generator: the format, its truth, and its Bayes figures."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from training.criteo import synth as criteo_synth
from training.metrics import auc, logloss


def test_rows_have_criteo_shape_and_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv.gz"
    criteo_synth.main(["--rows", "3000", "--out", str(path), "--scale", "0.001"])
    with gzip.open(path, "rt") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert len(rows) == 3000 and {len(r) for r in rows} == {40}
    assert {r[0] for r in rows} == {"0", "1"}
    i1 = [r[1] for r in rows]
    assert 0.3 < i1.count("") / len(i1) < 0.6  # I1 is empty about 45% of the time
    c1 = [r[14] for r in rows]
    assert all(len(v) == 8 and int(v, 16) >= 0 for v in c1)
    assert min(int(r[2]) for r in rows if r[2]) == -1 and max(int(r[5]) for r in rows if r[5]) > 1000


def test_bayes_figures_are_those_of_the_written_probabilities(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    truth = criteo_synth.write(path, 20_000, criteo_synth.World(scale=0.001), seed=3, chunk_rows=4096)
    labels = np.array([float(line.split("\t", 1)[0]) for line in path.read_text().splitlines()])
    probs = np.load(f"{path}.probs.npy").astype(np.float64)
    assert truth["positives"] == labels.sum() and 0.2 < labels.mean() < 0.3
    assert abs(truth["bayes_auc"] - auc(labels, probs)) < 1e-4
    logits = np.log(probs) - np.log1p(-probs)
    assert abs(truth["bayes_logloss"] - logloss(labels, logits)) < 1e-4
    assert 0.75 < truth["bayes_auc"] < 0.9  # Criteo-like difficulty
    assert json.loads(Path(f"{path}.truth.json").read_text())["rows"] == 20_000


def test_same_world_and_seed_give_the_same_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    world = criteo_synth.World(scale=0.001)
    criteo_synth.write(a, 2000, world, seed=1, chunk_rows=500)
    criteo_synth.write(b, 2000, world, seed=1, chunk_rows=500)
    assert a.read_bytes() == b.read_bytes()
    criteo_synth.write(b, 2000, world, seed=2, chunk_rows=500)
    assert a.read_bytes() != b.read_bytes()


def test_planted_pairs_carry_signal(tmp_path: Path) -> None:
    """Without the planted interactions the truth is much easier to beat: they matter."""
    world = criteo_synth.World(scale=0.001)
    flat = criteo_synth.World(scale=0.001, interaction=0.0)
    full = criteo_synth.write(tmp_path / "a.tsv", 20_000, world, seed=1)
    none = criteo_synth.write(tmp_path / "b.tsv", 20_000, flat, seed=1)
    assert full["bayes_auc"] > none["bayes_auc"] + 0.03


def test_more_planted_pairs_share_columns_with_factors_of_their_own(tmp_path: Path) -> None:
    """Pairs past the fourth reuse columns of earlier pairs; each pair has its own factors, so
    the added pairs change the click model beyond what the first four already say."""
    assert len(set(criteo_synth.PLANTED)) == len(criteo_synth.PLANTED) == 16
    pairs = criteo_synth.PLANTED
    for p in range(4, len(pairs)):
        assert set(pairs[p]) & {c for pair in pairs[:p] for c in pair}, pairs[p]
    four = criteo_synth.write(tmp_path / "a.tsv", 20_000, criteo_synth.World(scale=0.001), seed=1)
    twelve = criteo_synth.write(tmp_path / "b.tsv", 20_000,
                                criteo_synth.World(scale=0.001, planted=12), seed=1)
    p4, p12 = np.load(tmp_path / "a.tsv.probs.npy"), np.load(tmp_path / "b.tsv.probs.npy")
    assert np.corrcoef(p4, p12)[0, 1] < 0.95
    assert twelve["bayes_auc"] > four["bayes_auc"]


def test_parquet_mode_writes_day_partitions_spark_would(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs"
    argv = ["--rows", "3001", "--parquet", str(logs), "--days", "3", "--first-day", "2026-11-29",
            "--scale", "0.001", "--chunk-rows", "1000"]
    assert criteo_synth.main(argv) == 0
    parts = sorted(logs.glob("day=*/part-00000.parquet"))
    assert [p.parent.name for p in parts] == ["day=2026-11-29", "day=2026-11-30", "day=2026-12-01"]
    assert [pq.read_metadata(p).num_rows for p in parts] == [1000, 1000, 1001]
    assert pq.read_schema(parts[0]).remove_metadata() == criteo_synth.SPARK_SCHEMA
    assert len(np.load(f"{logs}.probs.npy")) == 3001
    assert json.loads(capsys.readouterr().out)["days"] == 3
    with pytest.raises(SystemExit):  # never mixes two logs in one directory
        criteo_synth.main(argv)
    assert "is not empty" in capsys.readouterr().err


def test_a_drift_changes_the_clicks_of_the_same_rows(tmp_path: Path) -> None:
    """Half the planted pairs go, the others grow: the rows are the same, the clicks follow
    the drifted model, and the undrifted truth is measurably worse on them."""
    world = criteo_synth.World(scale=0.001)
    drifted = criteo_synth.World(scale=0.001, drift=1)
    assert sorted(drifted.pair_weights().tolist()) == [0.0, 0.0, 2.0, 2.0]
    assert world.pair_weights().tolist() == [1.0] * 4
    before = next(criteo_synth.chunks(world, 20_000, seed=5, chunk_rows=20_000))
    after = next(criteo_synth.chunks(drifted, 20_000, seed=5, chunk_rows=20_000))
    assert after.table.drop_columns(["label"]).equals(before.table.drop_columns(["label"]))
    labels = after.table.column("label").to_numpy()
    assert 0.2 < labels.mean() < 0.3  # the bias is fitted again: the same click share
    stale, truth = (np.log(p) - np.log1p(-p) for p in (before.probs, after.probs))
    assert logloss(labels, stale) > logloss(labels, truth) + 0.02
    assert auc(labels, stale) < auc(labels, truth) - 0.02


def test_drift_seeds_choose_different_pairs() -> None:
    weights = {tuple(criteo_synth.World(planted=8, drift=seed).pair_weights()) for seed in range(1, 6)}
    assert len(weights) > 1 and all(w.count(0.0) == 4 for w in weights)


def test_drift_from_the_command_line_is_in_the_truth(tmp_path: Path) -> None:
    plain, drifted = tmp_path / "a.tsv", tmp_path / "b.tsv"
    criteo_synth.main(["--rows", "2000", "--out", str(plain), "--scale", "0.001"])
    criteo_synth.main(["--rows", "2000", "--out", str(drifted), "--scale", "0.001", "--drift", "3"])
    truth = json.loads(Path(f"{drifted}.truth.json").read_text())
    assert truth["world"]["drift"] == 3
    a, b = (np.load(f"{p}.probs.npy") for p in (plain, drifted))
    assert not np.allclose(a, b)
    rows = [line.split("\t", 1)[1] for line in plain.read_text().splitlines()]
    assert rows == [line.split("\t", 1)[1] for line in drifted.read_text().splitlines()]
