"""The optimizer of a run and the loss of a task."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from model.afm import AFM, PairModel
from model.manifest import Task
from training.config import TrainSection
from training.sparse import Combined, table_optimizer, tables


def make_optimizer(model: PairModel, cfg: TrainSection, sparse: bool = False) -> torch.optim.Optimizer:
    """The run's optimizer; with `sparse` tables, a sparse one for them (training.sparse) and
    the configured one for the other parameters, stepped together."""
    if not sparse:
        return _dense_optimizer(model, list(model.parameters()), cfg)
    table_params = [table.weight for table in tables(model)]
    table_ids = {id(p) for p in table_params}
    dense = [p for p in model.parameters() if id(p) not in table_ids]
    return Combined({"tables": table_optimizer(table_params, cfg),
                     "dense": _dense_optimizer(model, dense, cfg)})


def _dense_optimizer(model: PairModel, params: list[nn.Parameter],
                     cfg: TrainSection) -> torch.optim.Optimizer:
    groups: list[dict[str, Any]] = [{"params": params}]
    if isinstance(model, AFM) and cfg.attention_lr is not None:
        new = [*model.attention.parameters(), model.p]
        new_ids = {id(p) for p in new}
        groups = [
            {"params": [p for p in params if id(p) not in new_ids]},
            {"params": new, "lr": cfg.attention_lr},
        ]
    # fused: one pass over each parameter per step instead of one per elementwise op, which
    # matters when the feature table has millions of rows (docs/BENCHMARKS.md, training speed).
    if cfg.optimizer == "adagrad":
        # The authors' TensorFlow Adagrad starts its accumulator near zero, not at torch's 0.
        return torch.optim.Adagrad(groups, lr=cfg.lr, initial_accumulator_value=1e-8, fused=True)
    return torch.optim.Adam(groups, lr=cfg.lr, fused=True)


def loss_function(task: Task) -> nn.Module:
    return nn.BCEWithLogitsLoss() if task == "binary" else nn.MSELoss()


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainSection, steps_per_epoch: int,
                  done: int = 0) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The learning-rate schedule of `cfg` (None: constant rates), stepped after every optimizer
    step. It scales each group's own rate, and starts `done` steps in (a resumed run), so it
    needs no state of its own in checkpoints."""
    if cfg.warmup_epochs == 0 and cfg.lr_decay == "none":
        return None
    warmup = cfg.warmup_epochs * steps_per_epoch
    decay_steps = max(cfg.epochs * steps_per_epoch - warmup, 1)

    def factor(step: int) -> float:
        step += done
        if step < warmup:
            return (step + 1) / (warmup + 1)
        since = step - warmup
        if cfg.lr_decay == "exponential":
            return float(cfg.lr_gamma ** (since / steps_per_epoch))
        if cfg.lr_decay == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(since / decay_steps, 1.0)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def freeze_pretrained(model: PairModel, cfg: TrainSection, epoch: int, distributed: bool) -> None:
    """AFM from an FM: the FM's embeddings, linear weights and bias learn only after the first
    `freeze_pretrained_epochs` epochs (while the attention network and p learn from the start)."""
    if not (cfg.freeze_pretrained_epochs and isinstance(model, AFM) and (cfg.pretrain or cfg.init_from)):
        return
    if distributed:
        raise ValueError("train.freeze_pretrained_epochs is not supported under torchrun: "
                         "DistributedDataParallel needs a fixed set of trained parameters")
    for p in [*model.embedding.parameters(), *model.linear.parameters()]:
        p.requires_grad_(epoch > cfg.freeze_pretrained_epochs)
