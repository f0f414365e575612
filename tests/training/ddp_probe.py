"""`afm-train` as torchrun starts it, recording the labels each rank trains on.

Run as `torchrun --standalone --nproc-per-node=N tests/training/ddp_probe.py TRACE_DIR afm-train-args...`:
each rank appends the labels of every training batch it reads to TRACE_DIR/rank-<r>.npy.
"""

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from training.cli import train_main
from training.shards import Batch, Reading, Shards

_read = Shards.batches


def _recording(self: Shards, reading: Reading, epoch: int, skip: int = 0) -> Iterator[Batch]:
    trace = Path(sys.argv[1]) / f"rank-{os.environ['RANK']}-epoch-{epoch}.npy"
    seen = []
    for batch in _read(self, reading, epoch, skip):
        seen.append(batch.labels.numpy().copy())
        yield batch
    np.save(trace, np.concatenate(seen))


if __name__ == "__main__":
    Shards.batches = _recording  # type: ignore[method-assign]
    sys.exit(train_main(sys.argv[2:]))
