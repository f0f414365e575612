"""The training loop's pieces in the open: one epoch, evaluation, early stopping.

`training.trainer.Trainer` runs them epoch after epoch, with resuming and checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from model.afm import AFM, PairModel
from model.heap import trim_heap
from model.manifest import Task
from training.config import TrainSection
from training.downsample import logit_shift
from training.metrics import LOWER_IS_BETTER, evaluate_scores, monitored
from training.optim import loss_function
from training.shards import Batch, Shards

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
        total = total + cfg.embedding_l2 * _rows_l2(model.embedding.embedding, cfg, batch)
    if cfg.linear_l2 > 0 and isinstance(model, PairModel):
        total = total + cfg.linear_l2 * _rows_l2(model.linear.weight, cfg, batch)
    return total


def _rows_l2(table: nn.Embedding, cfg: TrainSection, batch: Batch | None) -> torch.Tensor:
    """0.5 * ||row||^2 summed over the rows each instance uses and averaged over the batch
    (l2_scope "batch"), or over the whole table (l2_scope "table")."""
    if cfg.l2_scope == "table" or batch is None:
        return 0.5 * table.weight.square().sum()
    # Unique rows weighted by their count: the same sum as per occurrence, gathering each row
    # once (no row twice, so its backward adds in no order that a thread count could change),
    # through the table's own lookup: a sparse gradient when the table's are.
    rows, counts = torch.unique(batch.indices[batch.weights != 0], return_counts=True)
    return 0.5 * (counts * table(rows).square().sum(dim=1)).sum() / len(batch.labels)


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


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel and torch.compile's wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
            model = model._orig_mod
        else:
            return model
