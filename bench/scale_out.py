"""Training throughput with 1 process, 1 process at N threads, and N processes under torchrun.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
        .venv/bin/python -m bench.scale_out [--config configs/frappe-afm.toml] [--repeats 3] [--procs 2]

Each layout trains the same config for `--epochs` epochs (from scratch, no pretraining) as
its own `afm-train` process tree; the layouts take turns, repeat by repeat, and the training
samples/s of every epoch (`history.json`: rows of all ranks over the epoch's training time,
evaluation excluded) are pooled into a median per layout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


def layouts(procs: int) -> dict[str, tuple[list[str], int]]:
    """Name -> (launcher, threads per process)."""
    torchrun = [str(BIN / "torchrun"), "--standalone", f"--nproc-per-node={procs}", "--no-python"]
    return {"1 process x 1 thread": ([], 1), f"1 process x {procs} threads": ([], procs),
            f"{procs} processes x 1 thread (torchrun, gloo)": (torchrun, 1)}


def train(launcher: list[str], threads: int, config: str, sets: list[str], out: Path) -> list[float]:
    command = [*launcher, str(BIN / "afm-train"), "--config", config, "--out", str(out), "--fresh"]
    for override in sets:
        command += ["--set", override]
    env = {**os.environ, **ALLOCATOR, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True, timeout=3600)
    history = json.loads((out / "history.json").read_text())
    return [epoch["samples_per_second"] for epoch in history["epochs"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "frappe-afm.toml"))
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    sets = [f"train.epochs={args.epochs}", "train.pretrain=''", "train.patience=1000", *args.sets]
    rates: dict[str, list[float]] = {name: [] for name in layouts(args.procs)}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name, (launcher, threads) in layouts(args.procs).items():
                rates[name] += train(launcher, threads, args.config, sets, Path(tmp) / f"{repeat}")
    base = statistics.median(rates["1 process x 1 thread"])
    print(f"{Path(args.config).name} {' '.join(args.sets)}: {args.epochs} epochs x {args.repeats} "
          f"repeats per layout, load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| layout | train samples/s (median of epochs) | vs 1 process x 1 thread |")
    print("|---|---|---|")
    for name, measured in rates.items():
        median = statistics.median(measured)
        print(f"| {name} | {median:,.0f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
