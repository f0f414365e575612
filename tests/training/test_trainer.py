"""The Trainer: dropout seeds (the streams earlier runs drew, distinct per rank, epoch and step)
and resuming in-process from a mid-epoch checkpoint."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import REPO
from training.checkpoint import TrainingState
from training.config import load_config
from training.run import RESUME_DIR, run
from training.trainer import dropout_seed


def test_dropout_seeds_are_the_ones_earlier_runs_drew() -> None:
    assert dropout_seed(2017, rank=0, epoch=1, step=0) == 2017 + 104729  # every fresh run's rank 0
    assert dropout_seed(5, rank=2, epoch=3, step=7) == 5 + 2 * 7919 + 3 * 104729 + 7


def test_no_two_ranks_epochs_or_steps_share_a_seed() -> None:
    starts = [(rank, epoch, step) for rank in range(13) for epoch in range(1, 4)
              for step in range(7919)]
    seeds = {dropout_seed(2017, *start) for start in starts}
    assert len(seeds) == len(starts)


class _Stop(Exception):
    pass


def _stop_at(epoch: int) -> Callable[[int, dict[str, float]], None]:
    def on_epoch(done: int, metrics: dict[str, float]) -> None:
        if done == epoch:
            raise _Stop
    return on_epoch


def test_a_run_stopped_midway_resumes_to_the_unbroken_runs_history(tmp_path: Path) -> None:
    """Stopped after epoch 2's last mid-epoch checkpoint, the run resumes from it: the dropout
    masks, schedule, optimizer and early stopping go on as if it had never stopped."""
    overrides = ["train.epochs=3", "data.synthetic.rows=2000", "train.checkpoint_every_steps=3",
                 "model.pair_dropout=0.2", "train.warmup_epochs=1", "train.lr_decay=cosine",
                 f"data.cache_dir={tmp_path / 'cache'}"]
    cfg = load_config(REPO / "configs" / "synthetic-afm.toml", overrides)
    unbroken = run(cfg, tmp_path / "unbroken")
    with pytest.raises(_Stop):
        run(cfg, tmp_path / "stopped", on_epoch=_stop_at(2))
    saved = TrainingState.latest(tmp_path / "stopped" / RESUME_DIR, cfg.identity())
    assert saved is not None and saved.epoch == 2 and saved.progress.step > 0  # mid-epoch
    resumed = run(cfg, tmp_path / "stopped")
    assert resumed.metrics == unbroken.metrics
    histories = [json.loads((tmp_path / name / "history.json").read_text())["epochs"]
                 for name in ("unbroken", "stopped")]
    untimed = [[{k: v for k, v in row.items() if "second" not in k} for row in h] for h in histories]
    assert untimed[0] == untimed[1]
