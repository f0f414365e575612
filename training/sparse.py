"""Sparse feature tables: gradients, exchange and optimizer steps in proportion to the rows a
step touches rather than to the tables' size.

With `train.sparse_tables` on, the embedding and linear tables (`nn.Embedding`s) produce
sparse gradients (`sparse=True`), DistributedDataParallel exchanges them as (row index, row)
pairs through gloo's sparse all-reduce (an all-gather of each rank's coalesced rows, then a
sum), and the optimizer updates only the rows a step touched: a lazy Adam (`LazyAdam`, the
update of `torch.optim.SparseAdam`) or Adagrad's sparse update for the tables, the configured
optimizer for the rest.
"""

# No `from __future__ import annotations`: DDP checks a comm hook's annotations as objects.
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from model.afm import PairModel
from training.config import TrainSection
from training.distributed import Context

log = logging.getLogger(__name__)
# `auto` turns sparse tables on when a table has more rows than this many times the lookups of
# a step (rows x fields x entries): docs/DISTRIBUTED.md, "Sparse tables", gives the measurement.
AUTO_ROWS_PER_LOOKUP = 1.0


def tables(model: PairModel) -> list[nn.Embedding]:
    """The per-feature tables: the embeddings v_i and the linear weights w_i."""
    return [model.embedding.embedding, model.linear.weight]


def resolve(cfg: TrainSection, model: PairModel, lookups_per_step: int, context: Context) -> bool:
    """Whether this run's tables are sparse: `train.sparse_tables`, with `auto` decided by the
    table's size against the lookups of a step (and off where it cannot work)."""
    if cfg.sparse_tables is not True and cfg.sparse_tables is not False:
        rows = model.config.num_features
        chosen = rows > AUTO_ROWS_PER_LOOKUP * lookups_per_step and not cfg.whole_table_l2()
        chosen = chosen and context.backend in ("", "gloo")
        log.info("sparse_tables auto: %s (%d table rows, %d lookups a step)",
                 "on" if chosen else "off", rows, lookups_per_step)
        return chosen
    if cfg.sparse_tables and context.backend not in ("", "gloo"):
        raise ValueError(f"train.sparse_tables = true needs the gloo backend, not {context.backend}: "
                         "set it to false or auto")
    return cfg.sparse_tables


def make_sparse(model: PairModel) -> None:
    """The tables' lookups produce sparse gradients from now on (before DDP wraps the model:
    it reads the flag to give each table a bucket of its own)."""
    for table in tables(model):
        table.sparse = True


class Combined(torch.optim.Optimizer):
    """Optimizers over disjoint parameters stepped as one: the tables' sparse one and the
    dense parameters' one. Its `param_groups` are theirs, so a learning-rate schedule sets
    both; its state_dict is `{name: their state_dict}`."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers
        super().__init__([p for o in optimizers.values() for g in o.param_groups for p in g["params"]], {})
        self.param_groups = [g for o in optimizers.values() for g in o.param_groups]

    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for optimizer in self.optimizers.values():
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: o.state_dict() for name, o in self.optimizers.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.keys() != self.optimizers.keys():
            raise ValueError(f"optimizer state for {sorted(state_dict)}, expected {sorted(self.optimizers)}")
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state_dict[name])


def table_optimizer(params: list[torch.Tensor], cfg: TrainSection) -> torch.optim.Optimizer:
    """The tables' optimizer: it reads and writes only the rows of a step's sparse gradient.

    Adagrad's sparse update is the dense one restricted to the touched rows (an untouched row's
    gradient is 0, which changes neither its accumulator nor the row). SparseAdam is lazy: an
    untouched row's moments are not decayed and the row does not move, where dense Adam keeps
    moving it with its decaying first moment."""
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, initial_accumulator_value=1e-8, foreach=False)
    return LazyAdam(params, lr=cfg.lr)


class LazyAdam(torch.optim.Optimizer):
    """torch.optim.SparseAdam's update, through row gathers and copies: SparseAdam's
    `sparse_mask` and dense-plus-sparse `add_` cost several times more per row on a table of
    millions of rows than on a small one (docs/DISTRIBUTED.md, "Sparse tables")."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(param), exp_avg_sq=torch.zeros_like(param))
                state["step"] += 1
                grad = param.grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
                exp_avg = state["exp_avg"].index_select(0, rows).lerp_(values, 1 - beta1)
                exp_avg_sq = state["exp_avg_sq"].index_select(0, rows).mul_(beta2)
                exp_avg_sq.addcmul_(values, values, value=1 - beta2)
                state["exp_avg"].index_copy_(0, rows, exp_avg)
                state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
                step_size = group["lr"] * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
                update = exp_avg.div_(exp_avg_sq.sqrt_().add_(group["eps"])).mul_(-step_size)
                param.index_copy_(0, rows, param.index_select(0, rows).add_(update))


@dataclass
class Exchanged:
    """Bytes this rank handed to gradient collectives (sparse tensors: their indices and values
    once coalesced, as gloo sends them), and how many exchanges (steps) that took."""

    bytes: int = 0
    steps: int = 0

    def take(self) -> float:
        """Bytes per step since the last call (0 without exchanges), and start counting anew."""
        per_step = self.bytes / max(self.steps, 1)
        self.bytes = self.steps = 0
        return per_step


def count_exchange(ddp: DistributedDataParallel, exchanged: Exchanged) -> None:
    """DDP's all-reduce of every gradient bucket, averaged over ranks as DDP's own is, with the
    bytes counted into `exchanged`."""
    ddp.register_comm_hook(exchanged, _counting_allreduce)


def _counting_allreduce(state: Exchanged, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    grad = bucket.buffer()
    if grad.is_sparse:
        grad = grad.coalesce()  # one (index, row) pair per touched row
        state.bytes += grad.indices().nbytes + grad.values().nbytes
    else:
        state.bytes += grad.nbytes
    grad.div_(dist.get_world_size())
    if bucket.is_last():
        state.steps += 1
    future = dist.all_reduce(grad, async_op=True).get_future()  # type: ignore[union-attr]
    return future.then(lambda done: done.value()[0])
