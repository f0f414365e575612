"""Checkpoints a killed run resumes from: written atomically, the newest readable one wins.

The run directory's `checkpoint.pt` holds the finished model (`{"model", "model_config",
"metrics", "epoch"}`); `checkpoints/` holds the training state while a run is under way
and is removed when it finishes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)
KEEP = 2
REQUIRED = ("model", "optimizer", "epoch", "step", "config")


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
