"""Where a logged request's shadow scores meet its impression log record.

The runtime gives a request both the shadow model and the log take a `ShadowSlot`; the
shadow fills it once it has scored that request (on the event loop), or gives it up when it
will not (the offer dropped with the shadow model, skipped, failed); the log's writer thread
writes the record once its slot is settled or its deadline has passed, with null shadow
columns in the last case. One assignment of a tuple publishes the scores, so the writer
reads either none or all of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ShadowValues:
    """One request's instances as the shadow model scored them."""

    version: str  # the shadow model's version
    scores: np.ndarray  # (B,) float64
    predictions: np.ndarray  # (B,) float64


@dataclass(slots=True)
class ShadowSlot:
    deadline: float  # time.monotonic() past which the writer no longer waits for it
    values: ShadowValues | None = None
    settled: bool = False  # filled, or given up: nothing more will come

    def fill(self, values: ShadowValues) -> None:
        self.values = values
        self.settled = True

    def give_up(self) -> None:
        self.settled = True

    def ready(self, now: float | None = None) -> bool:
        """Whether the writer can write its record: settled, or past its deadline."""
        return self.settled or (time.monotonic() if now is None else now) >= self.deadline
