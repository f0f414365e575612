"""Floating-point settings for training: denormal floats flushed to zero.

Trained weights drive some products and gradients of a step below float32's smallest normal
value (about 1.2e-38); the CPU then takes a slow microcode path for every such operand, and a
trained model's step can take several times as long as a fresh one's (docs/BENCHMARKS.md,
"Denormal floats"). Flushing them to zero (the FTZ and DAZ bits of the SSE control register)
changes results only below 1.2e-38.

The control register belongs to a thread, and `torch.set_flush_denormal` sets only the
calling thread's: the OpenMP threads that run torch's (and MKL's) parallel work keep theirs.
So the setting is also run on every thread of the calling thread's OpenMP team, which
libgomp keeps and reuses for later parallel regions of up to that size.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)
# float32's smallest normal value is 2 ** -126; this squared is far below it.
_TINY = 1e-20
# Elements enough for every thread of a team to take a share of an elementwise product
# (torch splits elementwise work in grains of 32768).
_PROBE_ELEMENTS = 1 << 20

_OMP_TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def flush_denormals(on: bool = True) -> bool:
    """Flush denormal floats to zero (or stop, `on=False`) on this thread and its torch worker
    threads; call it after `torch.set_num_threads` and from the thread that trains.
    -> whether every thread now does as asked (False on a CPU without the switch, or where
    the threads could not be reached: training then runs as before, only slower on trained
    weights)."""
    if not torch.set_flush_denormal(on):
        if on:
            log.warning("this CPU cannot flush denormal floats to zero: trained weights may slow steps")
        return not on
    _on_every_omp_thread(lambda: torch.set_flush_denormal(on))
    done = denormals_flushed() == on
    if not done:
        log.warning("denormal floats are flushed on the main thread only: torch's worker threads "
                    "could not be reached (OMP_NUM_THREADS=1 avoids them)")
    return done


@contextmanager
def flushing_denormals() -> Iterator[bool]:
    """Denormals flushed for the body, then the threads' switches as they were: the switch is
    process state, and other code in the same process (a test runner, a notebook, hypothesis'
    float strategies) may need denormals. Yields whether every thread flushes."""
    before = denormals_flushed()
    try:
        yield flush_denormals()
    finally:
        flush_denormals(before)


def denormals_flushed() -> bool:
    """Whether a denormal product comes out as zero on every thread torch computes with."""
    tiny = torch.full((_PROBE_ELEMENTS,), _TINY)
    return bool(((tiny * tiny) == 0).all())


def _on_every_omp_thread(action: Callable[[], object]) -> None:
    """Call `action()` once on each thread of an OpenMP team as large as torch's (libgomp's
    GOMP_parallel, the entry point of `#pragma omp parallel`; torch's wheels ship libgomp)."""
    if torch.get_num_threads() == 1:
        return
    try:
        gomp = ctypes.CDLL("libgomp.so.1")  # the copy torch already loaded, found by its soname
        parallel = gomp.GOMP_parallel
    except (OSError, AttributeError):
        return
    parallel.argtypes = [_OMP_TASK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    task = _OMP_TASK(lambda _: action())
    parallel(task, None, torch.get_num_threads(), 0)
