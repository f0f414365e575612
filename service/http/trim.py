"""Hand the C heap's free memory back to the OS after large requests (glibc `malloc_trim`).

glibc raises its mmap threshold to the largest block freed so far (up to 32 MB): once a
1 MB body has come and gone, buffers of that size come from the heap instead, and when
they are freed they leave holes the heap keeps for good (the reliability corpus's large
bodies did; docs/RELIABILITY.md). Fixing the thresholds instead (MALLOC_MMAP_THRESHOLD_)
made large requests slower, and a trim is not free, so it runs only after requests that
moved many bytes (request and response bodies), at most once per `TRIM_DELAY_S`, once the
request's objects are gone. Trimming after large answers too keeps the heap from staying
at a high-water mark left by hostile bodies that legitimate large answers then refill.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import Counter

from model.heap import malloc_trim

__all__ = ["TRIM_DELAY_S", "HeapTrimmer", "malloc_trim"]

TRIM_DELAY_S = 0.2


class HeapTrimmer:
    """Trims the heap shortly after a request that moved at least `min_bytes` of bodies."""

    def __init__(self, min_bytes: int, trim: Callable[[], object] | None, trims: Counter,
                 delay_s: float = TRIM_DELAY_S) -> None:
        # min_bytes 0 (off) or no malloc_trim: a threshold no body reaches.
        self.min_bytes = min_bytes if min_bytes > 0 and trim is not None else 1 << 62
        self.delay_s = delay_s
        self._trim = trim
        self._trims = trims
        self._pending = False

    def after_request(self, moved_bytes: int) -> None:
        """Callers may skip the call for requests under `min_bytes` (the hot path does)."""
        if moved_bytes < self.min_bytes or self._pending:
            return
        self._pending = True
        asyncio.get_running_loop().call_later(self.delay_s, self._run)

    def _run(self) -> None:
        self._pending = False
        assert self._trim is not None
        self._trim()
        self._trims.inc()
