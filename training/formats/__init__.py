"""The data formats, one module each, used by afm-train (`prepare`) and afm-eval (`read`).
Adding a format is one module that defines `FORMAT` and one line in FORMATS."""

from __future__ import annotations

from training.errors import UsageError
from training.formats import criteo, jsonl, libfm, parquet, synthetic, tabular
from training.formats.base import Format, Prepare, Read

FORMATS: dict[str, Format] = {f.name: f for f in (
    libfm.FORMAT,
    jsonl.FORMAT,
    tabular.FORMAT,
    criteo.FORMAT,
    parquet.FORMAT,
    synthetic.FORMAT,
)}
DEFAULT_READ = "libfm"
"""What afm-eval reads a file as when no format recognises it."""


def trainable() -> list[str]:
    return [name for name, f in FORMATS.items() if f.prepare is not None]


def readable() -> list[str]:
    return [name for name, f in FORMATS.items() if f.read is not None]


def preparer(name: str) -> Prepare:
    """How afm-train prepares data in the format `name`."""
    fmt = FORMATS.get(name)
    if fmt is None or fmt.prepare is None:
        raise UsageError(f"data format {name!r} is not for training: one of {', '.join(trainable())}")
    return fmt.prepare


def on_every_rank(name: str) -> bool:
    """Whether every rank prepares data in the format `name` (each its share)."""
    fmt = FORMATS.get(name)
    return fmt is not None and fmt.on_every_rank


def reader(name: str) -> Read:
    """How afm-eval reads data in the format `name`."""
    fmt = FORMATS.get(name)
    if fmt is None or fmt.read is None:
        raise UsageError(f"unknown data format {name!r}: one of {', '.join(readable())}")
    return fmt.read


def guess(path: str) -> str | None:
    """The format that recognises `path` (its suffix, or what a directory holds), if any."""
    return next((name for name, f in FORMATS.items() if f.read and f.recognises(path)), None)
