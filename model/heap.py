"""glibc's `malloc_trim`: hand the C heap's free pages back to the OS.

Both halves need it. The service trims after large requests (service/http/trim.py). Training
trims while it evaluates: run with MALLOC_MMAP_THRESHOLD_ raised (as the scripts do, for
speed), every tensor comes from the heap, and evaluation's batches, sized unlike training's,
leave holes that glibc keeps, so private memory creeps up with the rows evaluated.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def malloc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)`, or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def trim_heap() -> None:
    """Trim now where glibc is present; nothing elsewhere."""
    trim = _TRIM
    if trim is not None:
        trim()


_TRIM = malloc_trim()
