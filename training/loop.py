"""The training loop in the open: one epoch, evaluation, early stopping, fit.

Data-parallel under torchrun (`training.distributed`): every rank reads its own rows,
DistributedDataParallel averages the gradients, rank 0 evaluates and writes checkpoints,
and every rank follows rank 0's early-stopping decision.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model.afm import AFM, PairModel
from model.heap import trim_heap
from model.manifest import Task
from training import checkpoint
from training.config import TrainSection
from training.distributed import Context, from_main, total
from training.downsample import logit_shift
from training.metrics import LOWER_IS_BETTER, evaluate_scores, monitored
from training.optim import freeze_pretrained, loss_function, make_optimizer, make_schedule
from training.shards import Batch, Reading, Shards

log = logging.getLogger(__name__)
# Evaluation hands the heap's holes back to the OS this often (model/heap.py says why).
TRIM_EVERY_BATCHES = 8


@dataclass
class EpochProgress:
    """Where an epoch is: batches done and the running loss (saved in checkpoints)."""

    step: int = 0
    loss_sum: float = 0.0
    seen: int = 0


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    task: Task,
    cfg: TrainSection,
    progress: EpochProgress,
    after_step: Callable[[], None] = lambda: None,
) -> None:
    """One pass over `batches`, adding to `progress` (the training loss without the L2 term).

    A batch larger than `cfg.micro_batch_size` runs as several forward and backward passes
    whose gradients add up to the whole batch's (each part's mean loss and penalty weighted
    by its share of the rows): one optimizer step, with activation memory bounded by the part."""
    model.train()
    criterion = loss_function(task)
    inner = _unwrap(model)
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        rows = len(batch.labels)
        parts = _parts(batch, cfg.micro_batch_size or rows)
        for k, part in enumerate(parts):
            share = len(part.labels) / rows
            syncing = k == len(parts) - 1 or not isinstance(model, DistributedDataParallel)
            with nullcontext() if syncing else model.no_sync():  # type: ignore[operator]
                loss = criterion(model(part.indices, part.weights), part.labels)
                (share * (loss + penalty(inner, cfg, part))).backward()
            progress.loss_sum += loss.item() * len(part.labels)
        optimizer.step()
        progress.step += 1
        progress.seen += rows
        after_step()


def _parts(batch: Batch, size: int) -> list[Batch]:
    if len(batch.labels) <= size:
        return [batch]
    return [Batch(*columns) for columns in zip(*(t.split(size) for t in batch), strict=True)]


def penalty(model: nn.Module, cfg: TrainSection, batch: Batch | None = None) -> torch.Tensor | float:
    """The regularisation terms added to a batch's mean loss (`batch`: the rows it uses)."""
    total: torch.Tensor | float = 0.0
    if cfg.attention_l2 > 0 and isinstance(model, AFM):
        total = cfg.attention_l2 * model.attention_l2()
    if cfg.embedding_l2 > 0 and isinstance(model, PairModel):
        total = total + cfg.embedding_l2 * _rows_l2(model.embedding.embedding.weight, cfg, batch)
    if cfg.linear_l2 > 0 and isinstance(model, PairModel):
        total = total + cfg.linear_l2 * _rows_l2(model.linear.weight.weight, cfg, batch)
    return total


def _rows_l2(table: torch.Tensor, cfg: TrainSection, batch: Batch | None) -> torch.Tensor:
    """0.5 * ||row||^2 summed over the rows each instance uses and averaged over the batch
    (l2_scope "batch"), or over the whole table (l2_scope "table")."""
    if cfg.l2_scope == "table" or batch is None:
        return 0.5 * table.square().sum()
    # Unique rows weighted by their count: the same sum as per occurrence, gathering each row
    # once (index_select: its backward adds rows in a fixed order whatever the thread count).
    rows, counts = torch.unique(batch.indices[batch.weights != 0], return_counts=True)
    return 0.5 * (counts * table.index_select(0, rows).square().sum(dim=1)).sum() / len(batch.labels)


@torch.no_grad()
def predict(model: PairModel, data: Shards, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """-> scores and labels of every row, in order."""
    model.eval()
    scores, labels = [], []
    trim_heap()  # training's holes first
    for n, chunk in enumerate(data.chunks(batch_size), 1):
        indices = torch.from_numpy(chunk.indices.astype(np.int64))
        scores.append(model(indices, torch.from_numpy(chunk.weights)).numpy())
        labels.append(chunk.labels)
        if n % TRIM_EVERY_BATCHES == 0:
            trim_heap()
    trim_heap()
    if not scores:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(scores), np.concatenate(labels)


def evaluate(
    model: PairModel, data: Shards, task: Task, label_range: tuple[float, float], batch_size: int,
    shift: float = 0.0,
) -> dict[str, float]:
    """Metrics of the scores plus `shift` (training.downsample.logit_shift: the logit of the
    rows evaluated, when training or evaluation rows are downsampled)."""
    scores, labels = predict(model, data, batch_size)
    return evaluate_scores(task, labels, scores + shift, label_range)


def evaluation_shift(train: Shards, validation: Shards) -> float:
    """The served logit (the model's plus ln w for training negatives kept at w), moved to the
    validation rows' own base rate when their negatives are kept at w_v: ln(w / w_v)."""
    return logit_shift(train.downsampling.negative_keep_rate,
                       validation.downsampling.negative_keep_rate)


@dataclass
class EarlyStopping:
    """Decides only: is this epoch the best so far, and is it time to stop."""

    task: Task
    patience: int
    metric: str = ""
    """The watched metric ("": the task's default)."""
    min_delta: float = 0.0
    smoothing: float = 0.0
    best: float | None = None
    best_epoch: int = 0
    stale: int = 0
    smoothed: float | None = None
    best_smoothed: float | None = None

    def update(self, epoch: int, value: float) -> bool:
        """-> whether `value` is the best so far (its weights are kept). The patience counts
        epochs whose smoothed value beats the best smoothed one by no more than `min_delta`."""
        sign = 1.0 if LOWER_IS_BETTER[monitored(self.task, self.metric)] else -1.0
        improved = self.best is None or sign * (self.best - value) > 0
        if improved:
            self.best, self.best_epoch = value, epoch
        if self.smoothed is None or not self.smoothing:
            self.smoothed = value
        else:
            self.smoothed = self.smoothing * self.smoothed + (1 - self.smoothing) * value
        if self.best_smoothed is None or sign * (self.best_smoothed - self.smoothed) > self.min_delta:
            self.best_smoothed, self.stale = self.smoothed, 0
        else:
            self.stale += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.stale >= self.patience


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Checkpointing:
    """When to write the training state, and where (rank 0 only)."""

    directory: Path
    every_steps: int
    every_seconds: float
    config: dict[str, Any]
    last: float = field(default_factory=time.monotonic)

    def due(self, global_step: int) -> bool:
        if self.every_steps and global_step % self.every_steps == 0:
            return True
        return bool(self.every_seconds) and time.monotonic() - self.last >= self.every_seconds


def fit(
    model: PairModel,
    train: Shards,
    validation: Shards,
    task: Task,
    label_range: tuple[float, float],
    cfg: TrainSection,
    seed: int,
    context: Context,
    checkpoints: Checkpointing,
    on_epoch: Callable[[int, dict[str, float]], None] = lambda epoch, metrics: None,
) -> FitResult:
    """Train with early stopping on the validation metric, resuming from the newest checkpoint
    in `checkpoints.directory` if there is one; the best epoch's weights are loaded back into
    `model` before returning. `on_epoch(epoch, validation metrics)` is called after every
    epoch (a tuner prunes a trial by raising from it)."""
    trained: nn.Module = DistributedDataParallel(model) if context.distributed else model
    if cfg.compile:  # the call is compiled, not the module: state_dict keys stay unprefixed
        trained = torch.compile(trained, dynamic=True)  # type: ignore[assignment]
    optimizer = make_optimizer(model, cfg)
    reading = Reading(batch_size=max(cfg.batch_size // context.world_size, 1), seed=seed,
                      rank=context.rank, world_size=context.world_size, buffer_rows=cfg.shuffle_buffer)
    steps = train.steps(reading)
    shift = evaluation_shift(train, validation)
    monitor = monitored(task, cfg.monitor)
    stopping = EarlyStopping(task, cfg.patience, monitor, cfg.min_delta, cfg.patience_smoothing)
    result = FitResult()
    best_state = copy.deepcopy(model.state_dict())
    start_epoch, progress = 1, EpochProgress()
    state = checkpoint.latest(checkpoints.directory)
    if state is not None:
        _check_resumable(state, checkpoints.config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        stopping = EarlyStopping(**state["stopping"])
        best_state, result.history = state["best_model"], state["history"]
        result.best_metrics = state["best_metrics"]
        start_epoch, progress = state["epoch"], EpochProgress(**state["progress"])
    schedule = make_schedule(optimizer, cfg, steps, done=(start_epoch - 1) * steps + progress.step)
    if state is not None and context.is_main:
        torch.set_rng_state(state["rng"])  # rank 0's dropout masks go on as if never stopped
    else:
        torch.manual_seed(seed + 7919 * context.rank + start_epoch * 104729 + progress.step)
    log.info("%d rows, %d per step (%d per process x %d), %d steps per epoch, lr %g",
             len(train), reading.batch_size * context.world_size, reading.batch_size,
             context.world_size, steps, cfg.lr)

    def save(epoch: int, epoch_progress: EpochProgress) -> None:
        if not context.is_main:
            return
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                 "step": epoch_progress.step, "progress": asdict(epoch_progress),
                 "stopping": asdict(stopping), "best_model": best_state, "history": result.history,
                 "best_metrics": result.best_metrics, "rng": torch.get_rng_state(),
                 "config": checkpoints.config, "world_size": context.world_size}
        checkpoint.save(checkpoints.directory, state, (epoch - 1) * steps + epoch_progress.step)
        checkpoints.last = time.monotonic()

    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs + 1):
        tick = time.perf_counter()
        freeze_pretrained(model, cfg, epoch, context.distributed)
        batches = train.batches(reading, epoch, skip=progress.step)
        bar = tqdm(batches, total=steps - progress.step, desc=f"epoch {epoch}/{cfg.epochs}",
                   leave=False, disable=None if context.is_main else True)

        report = _ProgressLog(epoch, cfg.epochs, steps, progress, context)

        def after_step(epoch: int = epoch, current: EpochProgress = progress,
                       report: _ProgressLog = report) -> None:
            if schedule is not None:
                schedule.step()
            if checkpoints.due((epoch - 1) * steps + current.step) and current.step < steps:
                save(epoch, current)
            report.maybe()

        train_one_epoch(trained, bar, optimizer, task, cfg, progress, after_step)
        train_seconds = time.perf_counter() - tick
        loss_sum, seen = total(context, progress.loss_sum, progress.seen)
        metrics = evaluate(model, validation, task, label_range, cfg.eval_batch_size, shift) \
            if context.is_main else {}
        metrics = from_main(context, metrics)
        row = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_seconds": train_seconds,
               "samples_per_second": seen / train_seconds,
               **{f"validation_{k}": v for k, v in metrics.items()}}
        result.history.append(row)
        improved = stopping.update(epoch, metrics[monitor])
        if improved:
            best_state = copy.deepcopy(model.state_dict())
            result.best_metrics = metrics
        log.info(
            "epoch %d/%d  loss %.5f  validation %s  %.1fs (%.0f samples/s)%s",
            epoch, cfg.epochs, row["train_loss"], " ".join(f"{k} {v:.5f}" for k, v in metrics.items()),
            train_seconds, row["samples_per_second"], "  *" if improved else "",
        )
        progress = EpochProgress()
        on_epoch(epoch, metrics)
        if stopping.should_stop:
            log.info("no better %s for %d epochs: stopping", monitor, cfg.patience)
            break
        save(epoch + 1, progress)
    model.load_state_dict(best_state)
    result.best_epoch = stopping.best_epoch
    result.seconds = time.perf_counter() - started
    return result


def _check_resumable(state: dict[str, Any], config: dict[str, Any]) -> None:
    if state["config"] != config:
        changed = sorted(k for k in {*config, *state["config"]} if config.get(k) != state["config"].get(k))
        raise checkpoint.CheckpointError(
            f"the checkpoint was written by another config (sections {', '.join(changed)} differ): "
            "train into another --out directory, or pass --fresh to start over"
        )


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


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel and torch.compile's wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
            model = model._orig_mod
        else:
            return model
