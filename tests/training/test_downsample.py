"""Negative downsampling: which rows are kept, that they are the same wherever and however
they are read, and what is recorded."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from model.bundle import Bundle
from model.manifest import Manifest
from model.reference import Bins
from training import libfm
from training.config import RunConfig
from training.data import binary_labels, one_path
from training.downsample import keep_mask, logit_shift
from training.run import prepare_data
from training.shards import Reading, Shards, ShardWriter


def _rows(n: int, positive_rate: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose single index is their ordinal + 1, so a read row names itself."""
    labels = (np.random.default_rng(seed).random(n) < positive_rate).astype(np.float32)
    indices = (np.arange(n, dtype=np.int32) + 1).reshape(n, 1, 1)
    return indices, labels


def _write(directory: Path, indices: np.ndarray, labels: np.ndarray, rate: float, seed: int,
           block: int) -> Shards:
    writer = ShardWriter(directory, 1, 1, rows_per_shard=700, implicit_weights=True,
                         keep_negatives=rate, seed=seed)
    for start in range(0, len(labels), block):
        writer.append(indices[start : start + block], None, labels[start : start + block])
    return writer.finish()


def _ordinals(shards: Shards) -> np.ndarray:
    return shards.read(0, len(shards)).indices[:, 0, 0].astype(np.int64) - 1


def test_every_positive_and_about_w_of_the_negatives_are_kept() -> None:
    labels = (np.random.default_rng(1).random(200_000) < 0.05).astype(np.float32)
    kept = keep_mask(labels, 0, 0.25, seed=7)
    assert kept[labels == 1].all()
    share = kept[labels == 0].mean()
    assert share == pytest.approx(0.25, abs=0.005)  # 4 standard errors at 190k negatives
    assert keep_mask(labels, 0, 1.0, seed=7).all()


def test_the_kept_rows_depend_on_the_seed_and_ordinal_only(tmp_path: Path) -> None:
    indices, labels = _rows(5000)
    one = _write(tmp_path / "a", indices, labels, 0.3, seed=11, block=5000)
    other = _write(tmp_path / "b", indices, labels, 0.3, seed=11, block=333)  # other blocks
    reseeded = _write(tmp_path / "c", indices, labels, 0.3, seed=12, block=5000)
    np.testing.assert_array_equal(_ordinals(one), _ordinals(other))
    assert not np.array_equal(_ordinals(one), _ordinals(reseeded))
    expected = np.flatnonzero(keep_mask(labels, 0, 0.3, seed=11))
    np.testing.assert_array_equal(_ordinals(one), expected)
    np.testing.assert_array_equal(one.read(0, len(one)).labels, labels[expected])


def test_every_rank_and_epoch_reads_only_the_kept_rows(tmp_path: Path) -> None:
    indices, labels = _rows(5000)
    shards = _write(tmp_path / "s", indices, labels, 0.2, seed=3, block=1024)
    kept = set(np.flatnonzero(keep_mask(labels, 0, 0.2, seed=3)).tolist())
    for epoch in (1, 2):
        seen: set[int] = set()
        for rank in (0, 1):
            reading = Reading(batch_size=64, seed=5, rank=rank, world_size=2, buffer_rows=1000)
            for batch in shards.batches(reading, epoch):
                seen.update((batch.indices[:, 0, 0] - 1).tolist())
        assert seen <= kept and len(seen) >= len(kept) - 2 * len(shards.sizes)  # n mod W left out


def test_the_counts_are_recorded_in_the_index(tmp_path: Path) -> None:
    indices, labels = _rows(3000, positive_rate=0.2)
    shards = Shards.open(_write(tmp_path / "s", indices, labels, 0.5, seed=1, block=1000).directory)
    d = shards.downsampling
    negatives = int((labels == 0).sum())
    assert (d.negative_keep_rate, d.seed, d.rows_before, d.negatives_before) == (0.5, 1, 3000, negatives)
    assert d.rows_after == len(shards) == 3000 - negatives + d.negatives_after
    assert "3000 -> " in d.describe()


def test_the_shift_moves_the_logit_to_the_served_rate() -> None:
    # q on rows with a quarter of the negatives: p = q / (q + (1 - q) / w)
    w, q = 0.25, 0.2
    p = q / (q + (1 - q) / w)
    logit = np.log(q / (1 - q)) + logit_shift(w)
    assert 1 / (1 + np.exp(-logit)) == pytest.approx(p)
    assert logit_shift(0.25, 0.5) == pytest.approx(np.log(0.5))
    assert logit_shift(1.0) == 0.0


def test_a_keep_rate_outside_0_1_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_negatives"):
        ShardWriter(tmp_path, 1, 1, keep_negatives=0.0)


def test_a_downsampled_run_serves_the_traffics_click_rate(downsampled_binary: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    manifest = Manifest.read(downsampled_binary)
    assert manifest.negative_keep_rate == 0.2 and manifest.logit_shift == pytest.approx(np.log(0.2))
    assert manifest.calibration.kind == "platt"
    assert {"auc", "logloss", "ne", "calibration"} <= set(manifest.metrics)
    history = json.loads((downsampled_binary / "history.json").read_text())
    assert "validation_ne" in history["epochs"][0] and "calibration" in history["calibrated_metrics"]
    assert (downsampled_binary / "reliability.png").is_file()

    cfg = RunConfig.model_validate(history["config"])
    with caplog.at_level(logging.INFO, logger="training.run"):
        prepared = prepare_data(cfg)  # from the cache
    assert "4000 -> " in caplog.text and f"-> {len(prepared.train)} rows" in caplog.text
    assert len(prepared.validation) == 2000  # validation keeps every row by default

    bundle = Bundle.load(downsampled_binary)
    rows = libfm.read_libfm(one_path(cfg.data.validation, "data.validation"))
    data = libfm.encode(bundle.features, rows, binary_labels(rows.labels, "binary"))
    out = bundle.run(data.indices, data.weights)
    rate = data.labels.mean()
    assert 0.85 < out.prediction.mean() / rate < 1.15  # served: the traffic's click rate
    uncorrected = 1 / (1 + np.exp(-(out.score - manifest.logit_shift)))
    assert uncorrected.mean() / rate > 2  # what the model says about the rows it saw


def test_the_drift_reference_holds_the_served_scores_distribution(downsampled_binary: Path) -> None:
    bundle = Bundle.load(downsampled_binary)
    reference = bundle.manifest.reference
    assert reference is not None
    history = json.loads((downsampled_binary / "history.json").read_text())
    cfg = RunConfig.model_validate(history["config"])
    rows = libfm.read_libfm(one_path(cfg.data.validation, "data.validation"))
    data = libfm.encode(bundle.features, rows, binary_labels(rows.labels, "binary"))
    served = bundle.run(data.indices, data.weights).score  # with the logit shift
    bins = Bins(bundle.features, reference)
    assert bins.score_psi(bins.count_scores(served)) < 1e-3  # the same rows: no drift
    unshifted = served - bundle.manifest.logit_shift
    assert bins.score_psi(bins.count_scores(unshifted)) > 1.0
