"""Training speed of FM and AFM on Frappe, side by side, next to a FLOP estimate.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
        .venv/bin/python bench/train_speed.py [--steps 30] [--repeats 5]

Prints a markdown table (medians over repeats) for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from model.afm import AFM, ModelConfig, build_model
from training.config import load_config
from training.loop import Tensors
from training.optim import loss_function, make_optimizer
from training.run import model_config, prepare_data

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def forward_flops(config: ModelConfig, entries: int = 1) -> int:
    """Multiply-adds x 2 of one forward pass for one instance (embedding gathers are free)."""
    f, k, t = config.num_fields, config.embed_dim, config.attention_dim
    p = f * (f - 1) // 2
    flops = 2 * f * entries * k + 2 * f * entries  # weighted bags and the linear term
    if config.kind == "fm":
        return flops + 4 * f * k  # ((sum v)^2 - sum v^2) / 2, then the sum over k
    flops += p * k  # pairwise products
    flops += p * (2 * k * t + 2 * t)  # attention: W (v_i * v_j) + b, ReLU, h^T
    flops += 5 * p  # softmax
    return flops + 2 * p * k + 2 * k  # attention-weighted pooling and p^T


def samples_per_second(kind: str, steps: int, repeats: int) -> tuple[float, ModelConfig, int]:
    cfg = load_config(CONFIGS / f"frappe-{kind}.toml", ["train.pretrain=''"])
    prepared = prepare_data(cfg)
    model = build_model(model_config(cfg, prepared.space))
    data = Tensors.of(prepared.splits.train)
    optimizer = make_optimizer(model, cfg.train)
    criterion = loss_function(cfg.data.task)
    batch = cfg.train.batch_size
    rates = []
    model.train()
    for repeat in range(repeats + 1):  # the first pass warms up
        order = torch.randperm(len(data))[: steps * batch].split(batch)
        tick = time.perf_counter()
        for rows in order:
            loss = criterion(model(data.indices[rows], data.weights[rows]), data.labels[rows])
            if isinstance(model, AFM) and cfg.train.attention_l2:
                loss = loss + cfg.train.attention_l2 * model.attention_l2()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if repeat:
            rates.append(steps * batch / (time.perf_counter() - tick))
    return statistics.median(rates), model.config, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| model | K | T | forward MFLOP/sample | train samples/s (median) | s/epoch "
          "| train GFLOP/s (3x fwd) |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("fm", "afm"):
        rate, config, rows = samples_per_second(kind, args.steps, args.repeats)
        flops = forward_flops(config)
        attention = config.attention_dim if kind == "afm" else "-"
        print(f"| {kind.upper()} | {config.embed_dim} | {attention} | {flops / 1e6:.3f} | {rate:,.0f} "
              f"| {rows / rate:.1f} | {3 * flops * rate / 1e9:.1f} |")


if __name__ == "__main__":
    main()
