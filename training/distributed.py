"""Data-parallel training under torchrun: who this process is, and the few collectives the
loop needs. A process started without torchrun is rank 0 of a world of one."""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    backend: str = ""
    """gloo on CPU, nccl with CUDA; empty when not distributed."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start() -> Context:
    """Join the process group that torchrun describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    context = Context(dist.get_rank(), dist.get_world_size(), dist.get_backend())
    log.info("rank %d of %d (%s)", context.rank, context.world_size, context.backend)
    return context


def stop(context: Context, finished: bool = True) -> None:
    """Leave the group. `finished` (every rank got through its work): first wait for the
    others and drop this process's DistributedDataParallel reducers, since destroying the
    group with a peer's collective or a reducer still in flight can abort the process in
    gloo at exit; after a failure, leave at once (a barrier could wait on a rank that is
    stuck elsewhere)."""
    if context.distributed and dist.is_initialized():
        if finished:
            gc.collect()
            dist.barrier()
        dist.destroy_process_group()


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def from_main(context: Context, value: T) -> T:
    """Rank 0's `value` on every rank (e.g. its validation metrics, so that every rank stops
    at the same epoch)."""
    if not context.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def total(context: Context, *values: float) -> list[float]:
    """Sums over ranks."""
    if not context.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()
