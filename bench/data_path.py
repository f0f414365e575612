"""Training from shards against the in-memory path it replaced, side by side on Frappe.

    OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
        .venv/bin/python -m bench.data_path [--repeats 5] [--config configs/frappe-fm.toml]

Each repeat runs one full epoch each way, interleaved, with the same model and batch size:
`memory` draws a random permutation of all rows and indexes whole in-memory tensors (the
loop before shards); `shards` is the product's path (`Shards.batches`, int32 on disk,
shuffled per buffer). Prints medians of the data-only pass and of a training epoch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from model.afm import build_model
from training.config import load_config
from training.loop import EpochProgress, train_one_epoch
from training.numerics import flush_denormals
from training.optim import make_optimizer
from training.run import model_config, prepare_data
from training.shards import Batch, Reading, Shards

REPO = Path(__file__).resolve().parents[1]


def in_memory(train: Shards, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
    data = train.read(0, len(train))
    indices = torch.from_numpy(data.indices.astype(np.int64))
    weights, labels = torch.from_numpy(data.weights), torch.from_numpy(data.labels)
    for rows in torch.randperm(len(train), generator=generator).split(batch_size):
        yield Batch(indices[rows], weights[rows], labels[rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(REPO / "configs" / "frappe-fm.toml"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    flush_denormals()  # as training does
    cfg = load_config(args.config, ["train.pretrain=''"])
    prepared = prepare_data(cfg)
    train, batch = prepared.train, cfg.train.batch_size
    model = build_model(model_config(cfg, prepared.space))
    optimizer = make_optimizer(model, cfg.train)
    generator = torch.Generator().manual_seed(0)
    paths = {
        "memory": lambda epoch: in_memory(train, batch, generator),
        "shards": lambda epoch: train.batches(Reading(batch_size=batch, seed=0), epoch),
    }
    times: dict[str, dict[str, list[float]]] = {name: {"data": [], "epoch": []} for name in paths}
    for epoch in range(args.repeats + 1):  # the first round warms up
        for name, batches in paths.items():
            tick = time.perf_counter()
            for _ in batches(epoch):
                pass
            data_seconds = time.perf_counter() - tick
            tick = time.perf_counter()
            train_one_epoch(model, batches(epoch), optimizer, cfg.data.task, cfg.train, EpochProgress())
            if epoch:
                times[name]["data"].append(data_seconds)
                times[name]["epoch"].append(time.perf_counter() - tick)
    print(f"{cfg.name}: {len(train):,} rows, batch {batch}, {torch.get_num_threads()} thread(s), "
          f"medians of {args.repeats}\n")
    print("| path | data only, s/epoch | training, s/epoch | samples/s |")
    print("|---|---|---|---|")
    for name, measured in times.items():
        epoch_seconds = statistics.median(measured["epoch"])
        print(f"| {name} | {statistics.median(measured['data']):.3f} | {epoch_seconds:.2f} "
              f"| {len(train) / epoch_seconds:,.0f} |")
    ratio = statistics.median(times["memory"]["epoch"]) / statistics.median(times["shards"]["epoch"])
    print(f"\nshards / memory speed: {ratio:.2f}x")


if __name__ == "__main__":
    main()
