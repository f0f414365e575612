"""Dense against sparse tables under torchrun, at two table sizes, on the same rows.

    .venv/bin/python -m bench.sparse_tables --train TRAIN.tsv --validation VALID.tsv \
        [--buckets 3800 --buckets 384000] [--procs 2]

Every layout trains `configs/criteo-afm.toml` for two epochs over the same Criteo-format rows as
its own `torchrun ... --no-python afm-train` process tree (OMP_NUM_THREADS=1 per process), with
every categorical value hashed into `--buckets` indices per field (min_count above any count),
so that the feature table has about 26 x buckets rows whatever the log. Layouts run one after
the other: table size x sparse_tables false / true. It prints, per layout, the table rows, the
bytes each rank handed to the gradient collectives per step (`history.json`, counted by the
DDP comm hook in training/sparse.py), the mean step time of the second epoch (its training
seconds over its steps, evaluation excluded; the first also allocates the optimizer's state)
and the validation AUC and logloss after it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from model.manifest import Manifest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
NEVER_KEPT = 1 << 40  # a min_count no value reaches: every value is hashed


def train(procs: int, sets: list[str], out: Path) -> dict[str, Any]:
    launcher = [str(BIN / "torchrun"), "--standalone", f"--nproc-per-node={procs}", "--no-python"]
    command = [*(launcher if procs > 1 else []), str(BIN / "afm-train"),
               "--config", str(REPO / "configs" / "criteo-afm.toml"), "--out", str(out), "--fresh"]
    for override in sets:
        command += ["--set", override]
    env = {**os.environ, **ALLOCATOR, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True, timeout=1800)
    history = json.loads((out / "history.json").read_text())
    epoch = history["epochs"][-1]  # the first epoch also pays for allocating the optimizer's state
    seen = round(epoch["samples_per_second"] * epoch["train_seconds"])
    steps = -(-seen // history["config"]["train"]["batch_size"])
    return {"table_rows": Manifest.read(out).feature_space().num_features,
            "bytes_per_step": epoch["exchanged_bytes_per_step"],
            "step_seconds": epoch["train_seconds"] / max(steps, 1), "steps": steps,
            "auc": epoch.get("validation_auc"), "logloss": epoch.get("validation_logloss")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation", required=True)
    parser.add_argument("--buckets", type=int, action="append", help="hash buckets per field")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    common = [f"data.train={args.train}", f"data.validation={args.validation}", "train.epochs=2",
              "train.patience=2", "train.calibration=none", "train.checkpoint_every_minutes=0", *args.sets]
    print("| table rows | sparse_tables | bytes a rank exchanged per step | step time | AUC | logloss |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for buckets in args.buckets or [3800, 384000]:
            sized = [*common, f"data.min_count={NEVER_KEPT}", f"data.criteo.hash_buckets={buckets}",
                     f"data.cache_dir={tmp}/cache-{buckets}"]
            for tables in ("false", "true"):
                result = train(args.procs, [*sized, f"train.sparse_tables={tables}"], Path(tmp) / "run")
                print(f"| {result['table_rows']:,} | {tables} | "
                      f"{result['bytes_per_step'] / 1e6:,.2f} MB | {result['step_seconds'] * 1e3:,.0f} ms "
                      f"| {result['auc']:.4f} | {result['logloss']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
