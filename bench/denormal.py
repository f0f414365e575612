"""Denormal floats: a trained model's training step and scoring, with and without flushing
them to zero, against fresh weights, side by side in one run.

    OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python -m bench.denormal --checkpoint runs/frappe-afm [--steps 5] [--repeats 5]
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.denormal --bundle runs/frappe-afm [--bundle ...]

`--checkpoint`: a run directory (its finished model, checkpoint.pt, and its config from
history.json) or a checkpoint file of a run under way (RUN/checkpoints/step-*.pt). Four
variants take turns, round by round: the trained weights and fresh ones (`build_model` of
the same config), each with denormals flushed (`training.numerics.flush_denormals`) and not.
Each round starts from the weights with a fresh optimizer, takes one untimed step, then times
`--steps` steps of the config's batch size on the training data (`train_one_epoch`, the
product's step); figures are medians over every timed step. Times are the process's CPU
time, which other jobs on shared cores disturb far less than the wall clock.

`--bundle` (and the checkpoint's weights, exported as a bundle to a temporary directory):
onnxruntime scoring of each bundle with the session option
`session.set_denormal_as_zero` off and on, each in a worker process of its own (the option
sets a thread's control register once per process), taking turns; random known values,
batches of 1, 256 and 8192 rows; medians of the calls' CPU times.
"""

from __future__ import annotations

import argparse
import copy
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

REPO = Path(__file__).resolve().parents[1]
BATCHES = (1, 256, 8192)
CALLS = {1: 2000, 256: 50, 8192: 3}  # per round: each up to a few seconds


# ---- training steps --------------------------------------------------------------------------

def _trained_weights(path: Path) -> tuple[Any, dict[str, Any]]:
    """(run config, trained state_dict) of a run directory or a checkpoint file."""
    import torch

    from training.config import RunConfig

    if path.is_dir():
        config = json.loads((path / "history.json").read_text())["config"]
        path = path / "checkpoint.pt"
    else:
        config = torch.load(path, map_location="cpu", weights_only=True)["config"]
    return RunConfig.model_validate(config), torch.load(path, map_location="cpu", weights_only=True)["model"]


def denormal_share(model: Any) -> float:
    """The share of the nonzero parameters that are denormal floats."""
    import torch

    tiny = torch.finfo(torch.float32).tiny
    values = torch.cat([p.detach().flatten() for p in model.parameters()])
    nonzero = values[values != 0]
    return float((nonzero.abs() < tiny).sum()) / max(len(nonzero), 1)


def measure_steps(args: argparse.Namespace, export_to: Path) -> Path:
    """Print the step times; -> the trained weights exported as a bundle, for scoring."""
    import torch

    from model.afm import build_model
    from training.export import Serving, write_bundle
    from training.loop import EpochProgress, train_one_epoch
    from training.numerics import flush_denormals
    from training.optim import make_optimizer
    from training.run import model_config, prepare_data
    from training.shards import Reading

    cfg, weights = _trained_weights(Path(args.checkpoint))
    prepared = prepare_data(cfg)
    torch.manual_seed(cfg.seed)
    fresh = build_model(model_config(cfg, prepared.space))
    trained = build_model(model_config(cfg, prepared.space))
    trained.load_state_dict(weights)
    flush_denormals(False)  # a flushing thread reads a denormal as zero: count and export unflushed
    share = denormal_share(trained)
    write_bundle(export_to, trained, prepared.space, name=cfg.name, version=cfg.version,
                 serving=Serving(cfg.data.task, prepared.label_range(cfg.data.task)),
                 validation=prepared.validation, training={"checkpoint": str(args.checkpoint)},
                 data={}, metrics={})
    reading = Reading(batch_size=cfg.train.batch_size, seed=0)
    stream = prepared.train.batches(reading, epoch=1)
    batches = [next(stream) for _ in range(args.steps + 1)]
    variants = {(w, f): model for w, model in (("trained", trained), ("fresh", fresh))
                for f in (False, True)}
    times: dict[tuple[str, bool], list[float]] = {key: [] for key in variants}
    for round_ in range(args.repeats):
        keys = list(variants)
        for key in keys[round_ % 4:] + keys[:round_ % 4]:  # a different variant starts each round
            model = copy.deepcopy(variants[key])
            optimizer = make_optimizer(model, cfg.train)
            if not flush_denormals(key[1]):
                raise SystemExit(f"cannot set denormal flushing to {key[1]} on this machine")
            train_one_epoch(model, batches[:1], optimizer, cfg.data.task, cfg.train, EpochProgress())
            for batch in batches[1:]:
                tick = time.process_time()
                train_one_epoch(model, [batch], optimizer, cfg.data.task, cfg.train, EpochProgress())
                times[key].append(time.process_time() - tick)
    _report_steps(args, cfg, torch.get_num_threads(), share, times)
    return export_to


def _report_steps(args: argparse.Namespace, cfg: Any, threads: int, share: float,
                  times: dict[tuple[str, bool], list[float]]) -> None:
    ms = {key: 1000 * statistics.median(t) for key, t in times.items()}
    print(f"{cfg.name}, {args.checkpoint}: batch {cfg.train.batch_size}, {cfg.train.optimizer}, "
          f"{threads} thread(s), CPU time, medians of {args.repeats} x {args.steps} steps; "
          f"{100 * share:.3f}% of the trained weights are denormal\n")
    print("| weights | not flushed, ms/step | flushed, ms/step | not flushed / flushed |")
    print("|---|---|---|---|")
    for weights in ("trained", "fresh"):
        off, on = ms[(weights, False)], ms[(weights, True)]
        print(f"| {weights} | {off:,.1f} | {on:,.1f} | {off / on:.2f}x |")
    print(f"\ntrained / fresh: {ms[('trained', False)] / ms[('fresh', False)]:.2f}x not flushed, "
          f"{ms[('trained', True)] / ms[('fresh', True)]:.2f}x flushed")


# ---- onnxruntime scoring ---------------------------------------------------------------------

def score_worker(bundle_dir: str, denormal_as_zero: bool) -> None:
    """Score random rows of the bundle on request: a line with a batch size and a call count in,
    a line of JSON with the seconds per call out."""
    import onnxruntime as ort

    from bench.scenarios import instance
    from model.bundle import Bundle
    from model.manifest import GRAPH_OUTPUTS

    bundle = Bundle.load(bundle_dir)
    outputs = list(GRAPH_OUTPUTS[bundle.manifest.format_version])
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.set_denormal_as_zero", "1" if denormal_as_zero else "0")
    session = ort.InferenceSession(str(Path(bundle_dir) / bundle.manifest.onnx_file), options,
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2017)
    encoded = bundle.features.encode([instance(bundle.manifest.fields, rng) for _ in range(max(BATCHES))])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        rows, calls = map(int, line.split())
        feeds = {"indices": encoded.indices[:rows], "weights": encoded.weights[:rows]}
        seconds = []
        for _ in range(calls):
            tick = time.process_time()
            session.run(outputs, feeds)
            seconds.append(time.process_time() - tick)
        print(json.dumps({"seconds": seconds}), flush=True)


class _Scorer:
    def __init__(self, bundle_dir: str, denormal_as_zero: bool) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.denormal", "--score-worker", bundle_dir,
             "--denormal-as-zero", str(int(denormal_as_zero))],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"scoring worker exited ({self.proc.wait()})")
        return dict(json.loads(line))

    def run(self, rows: int, calls: int) -> list[float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{rows} {calls}\n")
        self.proc.stdin.flush()
        return list(self._read()["seconds"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def measure_scoring(args: argparse.Namespace, bundles: list[str]) -> None:
    print(f"\nonnxruntime, one thread, CPU time, medians of {args.repeats} rounds\n")
    print("| bundle | rows per call | not flushed, µs/call | denormal_as_zero, µs/call | "
          "not flushed / flushed |")
    print("|---|---|---|---|---|")
    for bundle_dir in bundles:
        scorers = {flag: _Scorer(bundle_dir, flag) for flag in (False, True)}
        try:
            for rows in BATCHES:
                seconds: dict[bool, list[float]] = {False: [], True: []}
                for round_ in range(args.repeats):
                    for flag in ((False, True) if round_ % 2 == 0 else (True, False)):
                        seconds[flag] += scorers[flag].run(rows, CALLS[rows])
                off, on = (1e6 * statistics.median(seconds[flag]) for flag in (False, True))
                print(f"| {bundle_dir} | {rows:,} | {off:,.0f} | {on:,.0f} | {off / on:.2f}x |")
        finally:
            for scorer in scorers.values():
                scorer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a run directory or a checkpoint file (training steps)")
    parser.add_argument("--bundle", action="append", default=[], help="a bundle directory (scoring)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round and variant")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; figures are medians")
    parser.add_argument("--score-worker", help=argparse.SUPPRESS)
    parser.add_argument("--denormal-as-zero", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.score_worker:
        score_worker(args.score_worker, bool(args.denormal_as_zero))
        return
    if not (args.checkpoint or args.bundle):
        parser.error("give --checkpoint, --bundle, or both")
    bundles = list(args.bundle)
    with tempfile.TemporaryDirectory() as scratch:
        if args.checkpoint:
            bundles.insert(0, str(measure_steps(args, Path(scratch) / "trained")))
        measure_scoring(args, bundles)


if __name__ == "__main__":
    main()
