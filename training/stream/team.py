"""Preparation shared out: every rank of a torchrun group, and `data.workers` processes in
each, take their share of a pass's tasks (a source's pieces, the fields to merge).

A task's output depends on the task alone, never on who runs it: rank r takes tasks r, r + W,
... and hands them to its worker processes, and each task writes its own directory. So the
same files and settings give the same cache whatever the number of ranks and workers. The
workers are spawned, not forked: a process holding gloo's and Arrow's threads is not safe to
fork, and the workers never import torch (they start in half a second).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from training.shards import key_digest

if TYPE_CHECKING:
    from training.distributed import Context

T = TypeVar("T")
_job: Callable[[Any], None] | None = None
"""A worker process's job, set once when the worker starts (`_adopt`)."""


@dataclass(frozen=True)
class Team:
    """Who prepares the data: this process's rank in its group (torch.distributed, with
    `world_size` > 1), and its worker processes."""

    rank: int = 0
    world_size: int = 1
    workers: int = 1

    @classmethod
    def of(cls, context: Context, workers: int = 1) -> Team:
        return cls(context.rank, context.world_size, workers)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def processes(self) -> int:
        return self.world_size * self.workers

    def run(self, tasks: Sequence[T], job: Callable[[T], None]) -> None:
        """`job(task)` for this rank's share of `tasks`, in its worker processes; returns
        once every rank has run its share. `job` is pickled once per worker."""
        mine = list(tasks[self.rank :: self.world_size])
        processes = min(self.workers, len(mine))
        if processes <= 1:
            for task in mine:
                job(task)
        else:
            with ProcessPoolExecutor(processes, mp_context=get_context("spawn"),
                                     initializer=_adopt, initargs=(job,)) as pool:
                for _ in pool.map(_run, mine):
                    pass
        self.barrier()

    def agree(self, value: T) -> T:
        """Rank 0's `value`, on every rank."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


def _adopt(job: Callable[[Any], None]) -> None:
    global _job
    _job = job


def _run(task: Any) -> None:
    assert _job is not None, "a worker runs tasks only after _adopt"
    _job(task)


def cached_together(root: Path, key: dict[str, Any], team: Team,
                    build: Callable[[Path, Path], None]) -> Path:
    """`training.shards.cached`, built by the whole team: every rank calls
    `build(pieces, out)`, where `pieces` is a directory all ranks share (its finished pieces
    outlive a killed run, so a rerun does only the rest) and `out` the directory to fill;
    `build` returns on every rank once `out` is complete. Rank 0 then renames `out` into place."""
    digest = key_digest(key)
    target = Path(root) / digest
    if team.agree(target.is_dir()):
        return target
    pieces = Path(root) / f".{digest}.pieces"
    out = Path(root) / team.agree(f".{digest}.{os.getpid()}.tmp")
    if team.is_main:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        pieces.mkdir(exist_ok=True)
    team.barrier()
    build(pieces, out)
    if team.is_main:
        (out / "key.json").write_text(json.dumps(key, sort_keys=True, indent=1, default=str))
        try:
            os.replace(out, target)
        except OSError:
            if not target.is_dir():  # else another run finished first
                raise
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(pieces, ignore_errors=True)
    team.barrier()
    return target
