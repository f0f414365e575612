"""Checkpoints a killed run resumes from: written atomically, the newest readable one wins.

The run directory's `checkpoint.pt` holds the finished model (`{"model", "model_config",
"metrics", "epoch"}`); `checkpoints/` holds the training state (`TrainingState`) while a run
is under way and is removed when it finishes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from training.loop import EarlyStopping, EpochProgress

log = logging.getLogger(__name__)
KEEP = 2
REQUIRED = ("model", "optimizer", "epoch", "step", "config")
# The saved form of TrainingState; checkpoints are transient, so another layout is refused
# rather than converted.
LAYOUT = 2


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed from; the message says why in one line."""


def save(directory: Path, state: dict[str, Any], step: int) -> Path:
    """Write `state` as step-<global step>.pt (write, then rename) and keep the newest few."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:010d}.pt"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in _newest_first(directory)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file fails inside torch's unpickler
        raise CheckpointError(f"{path.name}: unreadable ({type(e).__name__}: {e})") from e
    missing = [key for key in REQUIRED if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{path.name}: not a training checkpoint (missing {', '.join(missing)})")
    return state


def latest(directory: Path) -> dict[str, Any] | None:
    """The newest checkpoint that loads; broken ones are skipped with a one-line warning."""
    for path in _newest_first(directory):
        try:
            state = load(path)
        except CheckpointError as e:
            log.warning("skipping checkpoint %s", e)
            continue
        log.info("resuming from %s (epoch %d, step %d)", path, state["epoch"], state["step"])
        return state
    return None


def _newest_first(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(directory.glob("step-*.pt"), reverse=True)


@dataclass
class TrainingState:
    """Everything a killed run needs to go on as if it had never stopped. Rank 0 saves it;
    every rank restores it."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    epoch: int
    """The epoch under way, from 1; `progress` says how far into it."""
    progress: EpochProgress
    stopping: EarlyStopping
    best_model: dict[str, torch.Tensor]
    """The weights of the best epoch so far (loaded back when training ends)."""
    best_metrics: dict[str, float]
    history: list[dict[str, Any]]
    """One row per finished epoch."""
    rng: torch.Tensor
    """Rank 0's torch generator: its dropout masks go on where they stopped."""
    config: dict[str, Any]
    """The run config's identity (`RunConfig.identity`); another config's state is refused."""
    world_size: int

    def global_step(self, steps_per_epoch: int) -> int:
        return (self.epoch - 1) * steps_per_epoch + self.progress.step

    def save(self, directory: Path, steps_per_epoch: int) -> Path:
        """Write this state atomically as the newest checkpoint in `directory`."""
        saved = {f.name: getattr(self, f.name) for f in fields(self)}
        saved.update(layout=LAYOUT, step=self.progress.step, progress=asdict(self.progress),
                     stopping=asdict(self.stopping))
        return save(directory, saved, self.global_step(steps_per_epoch))

    @classmethod
    def latest(cls, directory: Path, config: dict[str, Any]) -> TrainingState | None:
        """The newest state in `directory` (None if there is none), which must have been
        written by this layout and by the same `config`: else CheckpointError."""
        saved = latest(directory)
        if saved is None:
            return None
        if saved.get("layout") != LAYOUT:
            raise CheckpointError(
                f"the checkpoints in {directory} were written by another version of afm-train "
                f"(layout {saved.get('layout', 1)}, this one reads {LAYOUT}): pass --fresh to start over"
            )
        values = {f.name: saved[f.name] for f in fields(cls)}
        state = cls(**{**values, "progress": EpochProgress(**saved["progress"]),
                       "stopping": EarlyStopping(**saved["stopping"])})
        state._check_config(config)
        return state

    def _check_config(self, config: dict[str, Any]) -> None:
        if self.config != config:
            changed = sorted(k for k in {*config, *self.config} if config.get(k) != self.config.get(k))
            raise CheckpointError(
                f"the checkpoint was written by another config (sections {', '.join(changed)} differ): "
                "train into another --out directory, or pass --fresh to start over"
            )
