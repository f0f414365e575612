"""Denormal floats are flushed to zero on every thread torch computes with, not only the caller's."""

import json
import subprocess
import sys

from tests.helpers import REPO

PROBE = """
import json, torch
torch.set_num_threads(2)
from training.numerics import denormals_flushed, flush_denormals
before = denormals_flushed()
torch.set_flush_denormal(True)  # the calling thread's switch alone
main_only = denormals_flushed()
flushed = flush_denormals()
everywhere = denormals_flushed()
tiny = torch.full((1 << 20,), 1e-20)
product_zeros = int(((tiny * tiny) == 0).sum())
off = flush_denormals(False), denormals_flushed()
print(json.dumps([before, main_only, flushed, everywhere, product_zeros, *off]))
"""


def test_flushing_reaches_every_torch_thread_and_can_be_undone() -> None:
    # A process of its own: the switch is process state, and two threads are needed.
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True,
                         check=True, env={"PATH": "", "OMP_NUM_THREADS": "2"})
    before, main_only, flushed, everywhere, zeros, undone, after = json.loads(out.stdout)
    assert not before and not main_only  # torch.set_flush_denormal misses the worker threads
    assert flushed and everywhere and zeros == 1 << 20
    assert undone and not after


def test_flushing_for_a_block_restores_the_switch_as_it_was() -> None:
    from training.numerics import denormals_flushed, flushing_denormals

    assert not denormals_flushed()
    with flushing_denormals() as flushed:
        assert flushed and denormals_flushed()
        with flushing_denormals():  # a pretraining run inside a run
            pass
        assert denormals_flushed()
    assert not denormals_flushed()
