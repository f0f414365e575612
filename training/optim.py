"""The optimizer of a run and the loss of a task."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from model.afm import AFM, PairModel
from model.manifest import Task
from training.config import TrainSection


def make_optimizer(model: PairModel, cfg: TrainSection) -> torch.optim.Optimizer:
    groups: list[dict[str, Any]] = [{"params": list(model.parameters())}]
    if isinstance(model, AFM) and cfg.attention_lr is not None:
        new = [*model.attention.parameters(), model.p]
        new_ids = {id(p) for p in new}
        groups = [
            {"params": [p for p in model.parameters() if id(p) not in new_ids]},
            {"params": new, "lr": cfg.attention_lr},
        ]
    if cfg.optimizer == "adagrad":
        # The authors' TensorFlow Adagrad starts its accumulator near zero, not at torch's 0.
        return torch.optim.Adagrad(groups, lr=cfg.lr, initial_accumulator_value=1e-8)
    return torch.optim.Adam(groups, lr=cfg.lr)


def loss_function(task: Task) -> nn.Module:
    return nn.BCEWithLogitsLoss() if task == "binary" else nn.MSELoss()
