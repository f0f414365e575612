"""Where sparse tables start to pay in one process: the median step (forward, backward,
optimizer) of the Criteo-shaped AFM with dense and with sparse tables, at several table sizes.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.sparse_crossover [--rows 100000 --rows 1000000 ...]

A step is 2,048 rows (a rank's share of a 4,096 batch on 2 processes) x 39 fields of uniform
random indices, Adam (lazy for sparse tables); dense and sparse take turns step by step at each size. Under
torchrun the dense tables also pay an all-reduce of the whole table, which this leaves out.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from model.afm import AFM, ModelConfig
from training import sparse
from training.config import TrainSection
from training.optim import make_optimizer

FIELDS, ROWS, STEPS, WARMUP = 39, 2048, 24, 2


def median_steps(table_rows: int) -> tuple[float, float]:
    """-> the median dense and sparse step at `table_rows`, their steps taken in turn."""
    runs = [_Run(table_rows, sparse_tables) for sparse_tables in (False, True)]
    generator = torch.Generator().manual_seed(1)
    offsets = (table_rows // FIELDS) * torch.arange(FIELDS).view(1, -1, 1)
    for _ in range(STEPS):
        indices = torch.randint(0, table_rows // FIELDS, (ROWS, FIELDS, 1), generator=generator) + offsets
        labels = torch.randint(0, 2, (ROWS,), generator=generator).float()
        for run in runs:
            run.step(indices, labels)
    dense, lazy = (statistics.median(run.times[WARMUP:]) for run in runs)
    return dense, lazy


class _Run:
    def __init__(self, table_rows: int, sparse_tables: bool) -> None:
        torch.manual_seed(0)
        self.model = AFM(ModelConfig(kind="afm", num_features=table_rows, num_fields=FIELDS, embed_dim=16,
                                     attention_dim=16, pair_dropout=0.0))
        if sparse_tables:
            sparse.make_sparse(self.model)
        self.optimizer = make_optimizer(self.model, TrainSection(optimizer="adam", lr=0.001), sparse_tables)
        self.times: list[float] = []

    def step(self, indices: torch.Tensor, labels: torch.Tensor) -> None:
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        scores = self.model(indices, torch.ones(ROWS, FIELDS, 1))
        torch.nn.functional.binary_cross_entropy_with_logits(scores, labels).backward()
        self.optimizer.step()
        self.times.append(time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="table rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| table rows | rows / lookups a step | dense step | sparse step | sparse / dense |")
    print("|---|---|---|---|---|")
    for rows in args.rows or [100_000, 300_000, 1_000_000, 3_000_000]:
        dense, lazy = median_steps(rows)
        print(f"| {rows:,} | {rows / (2 * ROWS * FIELDS):.1f} | {dense * 1e3:.0f} ms | {lazy * 1e3:.0f} ms "
              f"| {lazy / dense:.2f} |", flush=True)


if __name__ == "__main__":
    main()
