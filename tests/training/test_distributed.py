"""Data-parallel training under torchrun: two CPU processes with gloo on generated data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.manifest import Manifest
from tests.helpers import REPO

CONFIG = str(REPO / "configs" / "synthetic-afm.toml")
SMALL = ["data.synthetic.rows=6000", "train.epochs=15", "train.batch_size=256", "train.micro_batch_size=64"]


def _afm_train(out: Path, cache: Path, *launcher: str, extra: tuple[str, ...] = ()
               ) -> subprocess.CompletedProcess[str]:
    args = ["--config", CONFIG, "--out", str(out), "--set", f"data.cache_dir={cache}"]
    for override in [*SMALL, *extra]:
        args += ["--set", override]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, *args], env=env, capture_output=True, text=True, timeout=300,
                          cwd=REPO)


@pytest.mark.slow
def test_two_processes_read_disjoint_rows_write_one_bundle_and_score_like_one(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.mkdir()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                str(REPO / "tests" / "training" / "ddp_probe.py"), str(trace)]
    # sparse tables: the touched rows exchanged (dense ones: tests/training/test_sparse.py)
    two = _afm_train(tmp_path / "two", tmp_path / "cache", *torchrun, extra=("train.sparse_tables=true",))
    assert two.returncode == 0, two.stderr[-3000:]
    one = _afm_train(tmp_path / "one", tmp_path / "cache", sys.executable, "-m", "training.cli")
    assert one.returncode == 0, one.stderr[-3000:]

    assert two.stdout.count('"bundle"') == 1  # only rank 0 reports (and writes)
    manifest = Manifest.read(tmp_path / "two")
    assert (manifest.training["world_size"], manifest.training["backend"]) == (2, "gloo")
    assert not (tmp_path / "two" / "checkpoints").exists()
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert len(history["epochs"]) == 15
    assert all(epoch["exchanged_bytes_per_step"] > 0 for epoch in history["epochs"])

    for epoch in (1, 15):
        rank0 = np.load(trace / f"rank-0-epoch-{epoch}.npy")
        rank1 = np.load(trace / f"rank-1-epoch-{epoch}.npy")
        assert len(rank0) == len(rank1) == 2400  # 4,800 training rows split in two
        assert not set(rank0.tolist()) & set(rank1.tolist())  # real-valued targets: one per row
    alone = json.loads((tmp_path / "one" / "history.json").read_text())
    assert alone["epochs"][0]["exchanged_bytes_per_step"] == 0
    single = Manifest.read(tmp_path / "one").metrics["rmse"]
    assert manifest.metrics["rmse"] == pytest.approx(single, rel=0.10)
