"""The Trainer: the epoch loop of `training.loop`'s pieces, with resuming and checkpoints.

Data-parallel under torchrun (`training.distributed`): every rank reads its own rows,
DistributedDataParallel averages the gradients, rank 0 evaluates and writes checkpoints,
and every rank follows rank 0's early-stopping decision.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model.afm import PairModel
from model.manifest import Task
from training import sparse
from training.checkpoint import TrainingState
from training.config import TrainSection
from training.distributed import Context, from_main, total
from training.loop import EarlyStopping, EpochProgress, evaluate, evaluation_shift, train_one_epoch
from training.metrics import monitored
from training.optim import freeze_pretrained, make_optimizer, make_schedule
from training.shards import Reading, Shards

log = logging.getLogger(__name__)
RANK_SEED_STRIDE = 7919  # the 1,000th prime
EPOCH_SEED_STRIDE = 104729  # the 10,000th prime

EpochCallback = Callable[[int, dict[str, float]], None]


def dropout_seed(seed: int, rank: int, epoch: int, step: int) -> int:
    """The seed of a process's torch generator (its dropout masks) when it starts training at
    `step` of `epoch` with no saved generator to go on from: every rank of a fresh run (epoch 1,
    step 0), and on resuming every rank but 0 (only rank 0's generator is checkpointed).

    The rank's term gives each rank masks of its own; the epoch's and step's give a rank that
    resumes mid-run a stream of its own instead of a replay of epoch 1's. The strides are primes
    larger than a step count and a rank term can reach (while an epoch has under 7,919 steps
    and a run under 13 ranks), so no two (rank, epoch, step) share a seed. They are kept as first
    chosen: they fix every earlier run's dropout masks, so a run resumed by this code, or rerun,
    gives the figures it gave."""
    return seed + RANK_SEED_STRIDE * rank + EPOCH_SEED_STRIDE * epoch + step


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    sparse_tables: bool = False  # as `train.sparse_tables` resolved for this run


@dataclass
class Checkpointing:
    """When to write the training state, and where (rank 0 only)."""

    directory: Path
    every_steps: int
    every_seconds: float
    config: dict[str, Any]
    """The run config's identity: a checkpoint of another config is not resumed."""
    last: float = field(default_factory=time.monotonic)

    def due(self, global_step: int) -> bool:
        if self.every_steps and global_step % self.every_steps == 0:
            return True
        return bool(self.every_seconds) and time.monotonic() - self.last >= self.every_seconds


class Trainer:
    """Trains `model` with early stopping on the validation metric: `Trainer(...).fit()`.

    It resumes from the newest checkpoint in `checkpoints.directory` if there is one, and
    calls `on_epoch(epoch, validation metrics)` after every epoch (a tuner prunes a trial by
    raising from it)."""

    def __init__(self, model: PairModel, train: Shards, validation: Shards, task: Task,
                 label_range: tuple[float, float], cfg: TrainSection, seed: int, context: Context,
                 checkpoints: Checkpointing, on_epoch: EpochCallback = lambda epoch, metrics: None) -> None:
        self.model, self.train, self.validation = model, train, validation
        self.task, self.label_range, self.cfg, self.seed = task, label_range, cfg, seed
        self.context, self.checkpoints, self.on_epoch = context, checkpoints, on_epoch
        self.reading = Reading(batch_size=max(cfg.batch_size // context.world_size, 1), seed=seed,
                               rank=context.rank, world_size=context.world_size,
                               buffer_rows=cfg.shuffle_buffer)
        lookups = self.reading.batch_size * context.world_size * train.num_fields * train.max_entries
        self.sparse = sparse.resolve(cfg, model, lookups, context)
        if self.sparse:
            sparse.make_sparse(model)
        self.exchanged = sparse.Exchanged()
        self.trained = _wrapped(model, cfg, context, self.exchanged)
        self.optimizer = make_optimizer(model, cfg, self.sparse)
        self.steps = train.steps(self.reading)
        self.monitor = monitored(task, cfg.monitor)
        self.shift = evaluation_shift(train, validation)  # metrics on the served scale
        # Where the run is; `_resume` replaces these with a checkpoint's.
        self.epoch, self.progress = 1, EpochProgress()
        self.stopping = EarlyStopping(task, cfg.patience, self.monitor, cfg.min_delta,
                                      cfg.patience_smoothing)
        self.best_model = copy.deepcopy(model.state_dict())
        self.best_metrics: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.schedule: torch.optim.lr_scheduler.LRScheduler | None = None

    def fit(self) -> FitResult:
        """The epoch loop; the best epoch's weights are loaded back into the model at the end."""
        self._start()
        started = time.perf_counter()
        for epoch in range(self.epoch, self.cfg.epochs + 1):
            self.epoch = epoch
            metrics = self._train_and_validate()
            self.on_epoch(epoch, metrics)
            if self.stopping.should_stop:
                log.info("no better %s for %d epochs: stopping", self.monitor, self.cfg.patience)
                break
            self.epoch, self.progress = epoch + 1, EpochProgress()  # resumes at the next epoch
            self._save()
        self.model.load_state_dict(self.best_model)
        return FitResult(self.history, self.stopping.best_epoch, self.best_metrics,
                         time.perf_counter() - started, self.sparse)

    def state(self) -> TrainingState:
        """The training state as it is now (what a checkpoint saves)."""
        return TrainingState(
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(), epoch=self.epoch,
            progress=self.progress, stopping=self.stopping, best_model=self.best_model,
            best_metrics=self.best_metrics, history=self.history, rng=torch.get_rng_state(),
            config=self.checkpoints.config, world_size=self.context.world_size,
        )

    def _start(self) -> None:
        """Resume from the newest checkpoint if there is one, then set the schedule and the
        dropout masks where the run stands."""
        saved = TrainingState.latest(self.checkpoints.directory, self.checkpoints.config)
        if saved is not None:
            self._resume(saved)
        self.schedule = make_schedule(self.optimizer, self.cfg, self.steps,
                                      done=(self.epoch - 1) * self.steps + self.progress.step)
        if saved is not None and self.context.is_main:
            torch.set_rng_state(saved.rng)  # rank 0's dropout masks go on as if never stopped
        else:
            torch.manual_seed(dropout_seed(self.seed, self.context.rank, self.epoch, self.progress.step))
        log.info("%d rows, %d per step (%d per process x %d), %d steps per epoch, lr %g",
                 len(self.train), self.reading.batch_size * self.context.world_size,
                 self.reading.batch_size, self.context.world_size, self.steps, self.cfg.lr)

    def _resume(self, saved: TrainingState) -> None:
        self.model.load_state_dict(saved.model)
        self.optimizer.load_state_dict(saved.optimizer)
        self.epoch, self.progress, self.stopping = saved.epoch, saved.progress, saved.stopping
        self.best_model, self.best_metrics = saved.best_model, saved.best_metrics
        self.history = saved.history

    def _train_and_validate(self) -> dict[str, float]:
        """One epoch from where it stands, then the validation metrics, recorded in the history."""
        tick = time.perf_counter()
        freeze_pretrained(self.model, self.cfg, self.epoch, self.context.distributed)
        batches = self.train.batches(self.reading, self.epoch, skip=self.progress.step)
        bar = tqdm(batches, total=self.steps - self.progress.step, leave=False,
                   desc=f"epoch {self.epoch}/{self.cfg.epochs}", disable=not self.context.is_main or None)
        report = _ProgressLog(self.epoch, self.cfg.epochs, self.steps, self.progress, self.context)

        def after_step() -> None:
            if self.schedule is not None:
                self.schedule.step()
            if self.checkpoints.due(self._global_step()) and self.progress.step < self.steps:
                self._save()
            report.maybe()

        train_one_epoch(self.trained, bar, self.optimizer, self.task, self.cfg, self.progress, after_step)
        seconds = time.perf_counter() - tick
        metrics = evaluate(self.model, self.validation, self.task, self.label_range,
                           self.cfg.eval_batch_size, self.shift) if self.context.is_main else {}
        metrics = from_main(self.context, metrics)
        self._record(seconds, metrics)
        return metrics

    def _record(self, seconds: float, metrics: dict[str, float]) -> None:
        loss_sum, seen = total(self.context, self.progress.loss_sum, self.progress.seen)
        row = {"epoch": self.epoch, "train_loss": loss_sum / max(seen, 1), "train_seconds": seconds,
               "samples_per_second": seen / seconds, "exchanged_bytes_per_step": self.exchanged.take(),
               **{f"validation_{k}": v for k, v in metrics.items()}}
        self.history.append(row)
        improved = self.stopping.update(self.epoch, metrics[self.monitor])
        if improved:
            self.best_model, self.best_metrics = copy.deepcopy(self.model.state_dict()), metrics
        log.info(
            "epoch %d/%d  loss %.5f  validation %s  %.1fs (%.0f samples/s)%s",
            self.epoch, self.cfg.epochs, row["train_loss"],
            " ".join(f"{k} {v:.5f}" for k, v in metrics.items()), seconds, row["samples_per_second"],
            "  *" if improved else "",
        )

    def _global_step(self) -> int:
        return (self.epoch - 1) * self.steps + self.progress.step

    def _save(self) -> None:
        if not self.context.is_main:
            return
        self.state().save(self.checkpoints.directory, self.steps)
        self.checkpoints.last = time.monotonic()


def _wrapped(model: PairModel, cfg: TrainSection, context: Context, exchanged: sparse.Exchanged) -> nn.Module:
    """The module the steps run: DistributedDataParallel under torchrun (its gradient exchange
    counted into `exchanged`), compiled if asked."""
    trained: nn.Module = model
    if context.distributed:
        trained = DistributedDataParallel(model)
        sparse.count_exchange(trained, exchanged)
    if cfg.compile:  # the call is compiled, not the module: state_dict keys stay unprefixed
        trained = torch.compile(trained, dynamic=True)  # type: ignore[assignment]
    return trained


class _ProgressLog:
    """A log line a minute within long epochs (for logs that no progress bar reaches)."""

    every_seconds = 60.0

    def __init__(self, epoch: int, epochs: int, steps: int, progress: EpochProgress,
                 context: Context) -> None:
        self.epoch, self.epochs, self.steps, self.progress = epoch, epochs, steps, progress
        self.enabled = context.is_main
        self.began = self.last = time.monotonic()
        self.first_step, self.world = progress.step, context.world_size

    def maybe(self) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < self.every_seconds:
            return
        self.last = now
        done = self.progress.step - self.first_step
        rows = self.progress.seen * self.world * done / max(self.progress.step, 1)
        log.info("epoch %d/%d: step %d/%d, %.0f samples/s, loss %.5f", self.epoch, self.epochs,
                 self.progress.step, self.steps, rows / (now - self.began),
                 self.progress.loss_sum / max(self.progress.seen, 1))
