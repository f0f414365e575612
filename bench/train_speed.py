"""Training speed of our FM and AFM against DeepCTR-Torch's, side by side in one run.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 OMP_NUM_THREADS=1 \\
        .venv/bin/python -m bench.train_speed [--shapes frappe,criteo,paper] [--steps 8] \\
        [--repeats 5] [--peer-python /work/deepctr-venv/bin/python] [--before REV] [--compile]

Every model trains in its own worker process, one thread, on the same rows, batch size,
embedding and attention sizes and optimizer (Adam, lr 1e-3, binary cross-entropy). The
workers take turns, round by round, each running `--steps` steps, so background load falls
on all alike; figures are medians over the rounds. Batches are built before timing: a step
is forward, loss, backward and optimizer step. DeepCTR-Torch's step is what its `fit` runs
per batch (its data loader is not timed), with its L2 terms at 0 as ours have none.
`--before REV` adds our models as of a git revision (its model/layers.py and model/afm.py,
with plain Adam); `--compile` adds ours under torch.compile (first steps reported apart).
DeepCTR-Torch runs under --peer-python, in its own environment, never a project dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
FRAPPE = REPO.parent / "shared" / "data" / "frappe" / "frappe.train.libfm"
BATCH, LR = 4096, 1e-3
# Zen 4 core at 2.6 GHz (lscpu: BogoMIPS 5192): 2 FMA pipes x 8 fp32 lanes x 2 FLOP per cycle.
PEAK_GFLOPS_PER_CORE = 83.2
# (fields, K, T, rows per epoch): Frappe's training file; Criteo's Kaggle log.
SHAPES = {"frappe": (10, 64, 16, 202_027), "criteo": (39, 16, 16, 45_840_617),
          "paper": (10, 256, 8, 202_027)}
# Distinct values per categorical column of the Kaggle log (../shared/data/README.md).
CRITEO_CATEGORIES = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593,
                     3194, 27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)


def forward_flops(kind: str, fields: int, k: int, t: int) -> int:
    """Multiply-adds x 2 of the model's forward pass for one instance (gathers are free)."""
    p = fields * (fields - 1) // 2
    flops = 2 * fields * k + 2 * fields  # weighted bags and the linear term
    if kind == "fm":
        return flops + 4 * fields * k  # ((sum v)^2 - sum v^2) / 2, then the sum over k
    flops += p * k + p * (2 * k * t + 2 * t) + 5 * p  # products, attention network, softmax
    return flops + 2 * p * k + 2 * k  # attention-weighted pooling and p^T


def write_data(shape: str, rows: int, out: Path) -> None:
    """Per-field value ids (rows, F) and their cardinalities, labels: what every worker reads."""
    rng = np.random.default_rng(0)
    if shape == "criteo":  # 13 bucketised integers, 26 categories cut as min_count=10 would
        cards = np.array([64] * 13 + [c if c < 10_000 else int(10_000 * (c / 10_000) ** 0.45)
                                      for c in CRITEO_CATEGORIES])
        ids = np.floor(np.exp(rng.random((rows, len(cards))) * np.log(cards))).astype(np.int64) - 1
        labels = (rng.random(rows) < 0.25).astype(np.float32)
    else:
        lines = FRAPPE.read_text().split("\n")[:rows]
        table = np.array([[int(item.split(":")[0]) for item in line.split()[1:]]
                          for line in lines if line.strip()])
        labels = np.array([line.split()[0] == "1" for line in lines if line.strip()], np.float32)
        columns = [np.unique(column, return_inverse=True) for column in table.T]
        cards = np.array([len(values) for values, _ in columns])
        ids = np.stack([inverse for _, inverse in columns], axis=1).astype(np.int64)
    np.save(out / "ids.npy", ids)
    np.save(out / "cards.npy", cards)
    np.save(out / "labels.npy", labels)


# ---- workers: one model each, driven over stdin/stdout -------------------------------------

def _batches(data: Path, count: int) -> tuple[np.ndarray, list[np.ndarray], list[torch.Tensor]]:
    ids, labels = np.load(data / "ids.npy"), np.load(data / "labels.npy")
    order = np.random.default_rng(1).permutation(len(ids))[: count * BATCH].reshape(count, BATCH)
    return np.load(data / "cards.npy"), [ids[rows] for rows in order], [
        torch.from_numpy(labels[rows]) for rows in order]


def _ours(spec: dict[str, Any], cards: np.ndarray) -> tuple[torch.nn.Module, Any, torch.nn.Module]:
    if spec["impl"] == "before":
        sys.path.insert(0, spec["before_path"])
        from before_model.afm import ModelConfig, build_model  # type: ignore[import-not-found]
    else:
        from model.afm import ModelConfig, build_model
    config = ModelConfig(kind=spec["kind"], num_features=int(cards.sum()) + 1,
                         num_fields=len(cards), embed_dim=spec["k"], attention_dim=spec["t"],
                         pair_dropout=spec["dropout"])
    model = build_model(config)
    if spec["impl"] == "before":
        optimizer: Any = torch.optim.Adam(model.parameters(), lr=LR)
    else:
        from training.config import TrainSection
        from training.optim import make_optimizer
        optimizer = make_optimizer(model, TrainSection(optimizer="adam", lr=LR))
    return model, optimizer, torch.nn.BCEWithLogitsLoss()


def _peer(spec: dict[str, Any], cards: np.ndarray) -> Any:
    from deepctr_torch.inputs import SparseFeat
    from deepctr_torch.models import AFM

    columns = [SparseFeat(f"f{i}", int(c), embedding_dim=spec["k"]) for i, c in enumerate(cards)]
    model = AFM(columns, columns, use_attention=spec["kind"] == "afm", attention_factor=spec["t"],
                l2_reg_linear=0, l2_reg_embedding=0, l2_reg_att=0, afm_dropout=spec["dropout"],
                task="binary", device="cpu")
    model.compile("adam", "binary_crossentropy")  # torch.optim.Adam, lr 1e-3
    return model


def worker(spec: dict[str, Any]) -> None:
    from training.numerics import flush_denormals

    torch.set_num_threads(1)
    flush_denormals()  # as training does
    cards, ids, labels = _batches(Path(spec["data"]), 8)
    inputs: list[tuple[torch.Tensor, ...]]
    if spec["impl"] == "gemm":  # the forward projection of every pair and its two gradients
        pairs = len(cards) * (len(cards) - 1) // 2
        u, w = torch.randn(pairs * BATCH, spec["k"]), torch.randn(spec["t"], spec["k"])
        dz = torch.randn(pairs * BATCH, spec["t"])
        inputs = [()] * len(labels)

        def step(x: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:
            u @ w.t(), dz.t() @ u, dz @ w
    elif spec["impl"] == "peer":
        model = _peer(spec, cards)
        inputs = [(torch.from_numpy(x).float(),) for x in ids]

        def step(x: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:  # DeepCTR's fit, per batch
            pred = model(x[0]).squeeze(-1)
            model.optim.zero_grad()
            loss = model.loss_func(pred, y, reduction="sum")
            (loss + model.get_regularization_loss() + model.aux_loss).backward()
            model.optim.step()
    else:
        net, optimizer, criterion = _ours(spec, cards)
        offsets = np.concatenate([[1], 1 + np.cumsum(cards)[:-1]])  # index 0 is padding
        inputs = [(torch.from_numpy(x + offsets).unsqueeze(-1), torch.ones(*x.shape, 1)) for x in ids]
        forward = torch.compile(net) if spec["compile"] else net

        def step(x: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:
            loss = criterion(forward(*x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    tick = time.perf_counter()
    for i in range(2):
        step(inputs[i], labels[i])
    print(json.dumps({"warmup": time.perf_counter() - tick}), flush=True)
    done = 0
    for line in sys.stdin:
        tick = time.perf_counter()
        for _ in range(int(line)):
            step(inputs[done % len(inputs)], labels[done % len(inputs)])
            done += 1
        print(json.dumps({"seconds": time.perf_counter() - tick}), flush=True)


# ---- the driver -----------------------------------------------------------------------------

class Worker:
    def __init__(self, python: str, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", json.dumps(spec)], cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
        self.warmup = self._read()["warmup"]

    def _read(self) -> dict[str, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        while line := self.proc.stdout.readline():
            if line.startswith("{"):  # DeepCTR-Torch prints a version check on import
                return dict(json.loads(line))
        raise RuntimeError(f"worker {self.spec['impl']} {self.spec['kind']} exited ({self.proc.wait()})")

    def run(self, steps: int) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        return steps * BATCH / self._read()["seconds"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def before_package(rev: str, root: Path) -> Path:
    """model/layers.py and model/afm.py as of `rev`, importable as `before_model`."""
    package = root / "before_model"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("layers.py", "afm.py"):
        source = subprocess.run(["git", "show", f"{rev}:model/{name}"], cwd=REPO, check=True,
                                capture_output=True, text=True).stdout
        (package / name).write_text(source.replace("from model.", "from before_model."))
    return root


def variants(
    args: argparse.Namespace, shape: str, data: Path, root: Path
) -> list[tuple[str, dict[str, Any]]]:
    """(interpreter, worker spec) of every model measured at `shape`."""
    fields, k, t, _ = SHAPES[shape]
    impls = ["ours"] + (["before"] if args.before else []) + (["compiled"] if args.compile else [])
    if args.peer_python:
        impls.append("peer")
    out = []
    for kind in ("afm", "fm"):
        for impl in impls + (["gemm"] if args.gemm_bound and kind == "afm" else []):
            spec = {"impl": "ours" if impl == "compiled" else impl, "kind": kind, "k": k, "t": t,
                    "dropout": args.dropout if kind == "afm" else 0.0, "data": str(data),
                    "compile": impl == "compiled", "before_path": str(root)}
            out.append((args.peer_python if impl == "peer" else sys.executable, spec))
    return out


def label(spec: dict[str, Any], before: str) -> str:
    name = {"ours": "ours", "before": f"ours at {before}", "peer": "DeepCTR-Torch 0.3.0",
            "gemm": "its 3 projection GEMMs alone (a bound)"}[spec["impl"]]
    return f"{spec['kind'].upper()}, {name}{' + torch.compile' if spec['compile'] else ''}"


def measure(args: argparse.Namespace, shape: str, root: Path) -> list[str]:
    data = root / shape
    data.mkdir()
    write_data(shape, args.rows, data)
    workers = [Worker(python, spec) for python, spec in variants(args, shape, data, root)]
    rates: list[list[float]] = [[] for _ in workers]
    for round_ in range(args.repeats):
        first = round_ % len(workers)  # a different worker starts each round
        for i in [*range(first, len(workers)), *range(first)]:
            rates[i].append(workers[i].run(args.steps))
    for w in workers:
        w.close()
    fields, k, t, epoch_rows = SHAPES[shape]
    medians = [statistics.median(r) for r in rates]
    peer = {w.spec["kind"]: m for w, m in zip(workers, medians, strict=True) if w.spec["impl"] == "peer"}
    lines = []
    for w, rate in zip(workers, medians, strict=True):
        gflops = 3 * forward_flops(w.spec["kind"], fields, k, t) * rate / 1e9
        ratio = f"{rate / peer[w.spec['kind']]:.2f}x" if w.spec["kind"] in peer else "-"
        lines.append(f"| {shape} (F={fields}, K={k}, T={t}) | {label(w.spec, args.before)} | {rate:,.0f} "
                     f"| {ratio} | {epoch_rows / rate:,.1f} | {gflops:.1f} "
                     f"| {100 * gflops / PEAK_GFLOPS_PER_CORE:.1f}% | {w.warmup:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="frappe,criteo,paper")
    parser.add_argument("--steps", type=int, default=8, help="training steps per round and model")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; figures are medians")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of data generated or read")
    parser.add_argument("--dropout", type=float, default=0.5, help="AFM's dropout on the pooled vector")
    parser.add_argument("--peer-python", default="/work/deepctr-venv/bin/python")
    parser.add_argument("--before", default="", help="a git revision to measure our models at")
    parser.add_argument("--compile", action="store_true", help="also ours under torch.compile")
    parser.add_argument("--gemm-bound", action="store_true",
                        help="also AFM's projection GEMMs alone: a bound on any fp32 AFM step")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    if not Path(args.peer_python).exists():
        print(f"no DeepCTR-Torch interpreter at {args.peer_python}: measuring ours only", file=sys.stderr)
        args.peer_python = ""
    print(f"torch {torch.__version__}, 1 thread per model, batch {BATCH}, {args.steps} steps x "
          f"{args.repeats} rounds, medians\n")
    print("| shape | model | samples/s | vs DeepCTR-Torch | s/epoch | GFLOP/s (3x fwd) "
          "| of 1-core peak | first 2 steps (s) |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = before_package(args.before, Path(tmp)) if args.before else Path(tmp)
        for shape in args.shapes.split(","):
            print("\n".join(measure(args, shape, root)), flush=True)


if __name__ == "__main__":
    main()
