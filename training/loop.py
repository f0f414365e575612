"""The training loop in the open: one epoch, evaluation, early stopping, fit."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from model.afm import AFM, PairModel
from model.manifest import Task
from training.config import TrainSection
from training.data import Dataset
from training.metrics import MONITOR, evaluate_scores, is_better
from training.optim import loss_function, make_optimizer

log = logging.getLogger(__name__)


@dataclass
class Tensors:
    """A dataset as torch tensors, converted once (numpy memory is shared)."""

    indices: torch.Tensor
    weights: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def of(cls, data: Dataset) -> Tensors:
        return cls(
            torch.from_numpy(data.indices), torch.from_numpy(data.weights), torch.from_numpy(data.labels)
        )

    def __len__(self) -> int:
        return len(self.labels)


def train_one_epoch(
    model: PairModel,
    data: Tensors,
    optimizer: torch.optim.Optimizer,
    task: Task,
    cfg: TrainSection,
    generator: torch.Generator,
    progress: str = "",
) -> float:
    """One pass in a random order; returns the mean training loss (without the L2 term)."""
    model.train()
    criterion = loss_function(task)
    order = torch.randperm(len(data), generator=generator)
    total, seen = 0.0, 0
    batches = tqdm(order.split(cfg.batch_size), desc=progress, leave=False, disable=None)
    for batch in batches:
        scores = model(data.indices[batch], data.weights[batch])
        loss = criterion(scores, data.labels[batch])
        objective = loss
        if cfg.attention_l2 > 0 and isinstance(model, AFM):
            objective = loss + cfg.attention_l2 * model.attention_l2()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        total += loss.item() * len(batch)
        seen += len(batch)
    return total / max(seen, 1)


@torch.no_grad()
def predict(model: PairModel, data: Tensors, batch_size: int) -> np.ndarray:
    model.eval()
    parts = [
        model(data.indices[i : i + batch_size], data.weights[i : i + batch_size])
        for i in range(0, len(data), batch_size)
    ]
    return torch.cat(parts).numpy()


def evaluate(
    model: PairModel, data: Tensors, task: Task, label_range: tuple[float, float], batch_size: int
) -> dict[str, float]:
    return evaluate_scores(task, data.labels.numpy(), predict(model, data, batch_size), label_range)


@dataclass
class EarlyStopping:
    """Decides only: is this epoch the best so far, and is it time to stop."""

    task: Task
    patience: int
    best: float | None = None
    best_epoch: int = 0
    stale: int = 0

    def update(self, epoch: int, value: float) -> bool:
        if is_better(self.task, value, self.best):
            self.best, self.best_epoch, self.stale = value, epoch, 0
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.stale >= self.patience


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def fit(
    model: PairModel,
    train: Dataset,
    validation: Dataset,
    task: Task,
    label_range: tuple[float, float],
    cfg: TrainSection,
    seed: int,
) -> FitResult:
    """Train with early stopping on the validation metric; the best epoch's weights are
    loaded back into `model` before returning."""
    generator = torch.Generator().manual_seed(seed)
    train_t, valid_t = Tensors.of(train), Tensors.of(validation)
    optimizer = make_optimizer(model, cfg)
    monitor, _ = MONITOR[task]
    stopping = EarlyStopping(task, cfg.patience)
    result = FitResult()
    best_state = copy.deepcopy(model.state_dict())
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        tick = time.perf_counter()
        loss = train_one_epoch(model, train_t, optimizer, task, cfg, generator, f"epoch {epoch}")
        train_seconds = time.perf_counter() - tick
        metrics = evaluate(model, valid_t, task, label_range, cfg.eval_batch_size)
        row = {"epoch": epoch, "train_loss": loss, "train_seconds": train_seconds,
               "samples_per_second": len(train) / train_seconds,
               **{f"validation_{k}": v for k, v in metrics.items()}}
        result.history.append(row)
        improved = stopping.update(epoch, metrics[monitor])
        if improved:
            best_state = copy.deepcopy(model.state_dict())
            result.best_metrics = metrics
        log.info(
            "epoch %d  loss %.5f  validation %s  %.1fs (%.0f samples/s)%s",
            epoch, loss, " ".join(f"{k} {v:.5f}" for k, v in metrics.items()),
            train_seconds, len(train) / train_seconds, "  *" if improved else "",
        )
        if stopping.should_stop:
            log.info("no better %s for %d epochs: stopping", monitor, cfg.patience)
            break
    model.load_state_dict(best_state)
    result.best_epoch = stopping.best_epoch
    result.seconds = time.perf_counter() - started
    return result
