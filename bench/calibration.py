"""Calibration of what a bundle serves, and what post-hoc calibration maps would change.

    python -m bench.calibration served --model RUN --data valid.tsv
        afm-serve on RUN (127.0.0.1, a free port); every row of a Criteo-format file POSTed to
        /predict as an instance, in batches; the mean served probability against the rows'
        observed click rate (and, beside FILE.probs.npy from training.criteo.synth, against
        the generator's true mean probability). One JSON line.

    python -m bench.calibration posthoc --model RUN --data FILE [--format F]
        The bundle's scores of FILE's rows (any afm-eval format), split in two halves at
        random: each map (none, platt, isotonic) fitted on one half and measured on the
        other, and on the rows it was fitted on; a Markdown table.

The server is stopped by its PID when the script ends, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.harness import ServerProcess
from model.bundle import Bundle
from training.calibrate import fit
from training.cli import data_format, load_eval_data, scored
from training.metrics import evaluate_predictions

KINDS = ("none", "platt", "isotonic")
FIGURES = ("logloss", "ne", "calibration", "auc")


def criteo_instances(path: Path, rows: int) -> Iterator[tuple[list[dict[str, Any]], np.ndarray]]:
    """(instances, labels) blocks of a Criteo-format file, as a client would send them: an
    empty column left out, integers as numbers."""
    from training.config import CriteoOptions
    from training.criteo.reader import Reader, sniff

    delimiter, header = sniff(path)
    left = rows
    for batch in Reader(path, CriteoOptions(delimiter=delimiter, header=header)).batches():
        table = batch.slice(0, left).to_pylist()
        left -= len(table)
        labels = np.array([row.pop("label") for row in table], np.float64)
        yield [{k: v for k, v in row.items() if v is not None} for row in table], labels
        if left <= 0:
            return


def served(model: Path, data: Path, rows: int, batch: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    probabilities, labels = [], []
    with ServerProcess(["--model-dir", str(model), "--workers", "1"], env) as server:
        server.wait_ready()
        began = time.perf_counter()
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for instances, block_labels in criteo_instances(data, rows):
                for start in range(0, len(instances), batch):
                    response = client.post("/predict", json={"instances": instances[start : start + batch]})
                    response.raise_for_status()
                    probabilities += [p["probability"] for p in response.json()["predictions"]]
                labels.append(block_labels)
        seconds = time.perf_counter() - began
    observed = np.concatenate(labels)
    p = np.asarray(probabilities)
    result = {"model": str(model), "rows": len(p), "observed_rate": float(observed.mean()),
              "mean_served": float(p.mean()), "ratio": float(p.mean() / observed.mean()),
              **{f"served_{k}": v for k, v in evaluate_predictions("binary", observed, p, (0, 1)).items()},
              "seconds": round(seconds, 1)}
    truth = Path(f"{data}.probs.npy")
    if truth.is_file():
        true_p = np.load(truth, mmap_mode="r")[: len(p)]
        result.update(true_mean=float(true_p.mean()), ratio_to_true=float(p.mean() / true_p.mean()))
    return result


def posthoc(model: Path, data: str, fmt: str | None, seed: int) -> str:
    bundle = Bundle.load(model)
    labels, scores, _, _ = scored(bundle, load_eval_data(bundle, [data], data_format([data], fmt)))
    scores = scores.astype(np.float64)
    half = np.random.default_rng(seed).permutation(len(labels)) < len(labels) // 2
    lines = [f"{bundle.manifest.name} on {data}: {len(labels)} rows, base rate {labels.mean():.5f}",
             "", "| map | fitted on | measured on | " + " | ".join(FIGURES) + " |",
             "|---|---|---|" + "---|" * len(FIGURES)]
    for kind in KINDS:
        calibration = fit(kind, scores[half], labels[half])  # type: ignore[arg-type]
        for measured_on, name in ((~half, "half B"), (half, "half A")):
            if kind == "none" and name == "half A":
                continue  # nothing was fitted
            p = calibration.probability(scores[measured_on])
            metrics = evaluate_predictions("binary", labels[measured_on], p, (0.0, 1.0))
            figures = " | ".join(f"{metrics[k]:.5f}" for k in FIGURES)
            lines.append(f"| {kind} | half A | {name} | {figures} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    over_http = commands.add_parser("served", help="served probabilities over HTTP")
    over_http.add_argument("--model", type=Path, required=True)
    over_http.add_argument("--data", type=Path, required=True, help="a Criteo-format file")
    over_http.add_argument("--rows", type=int, default=1 << 62, help="at most this many rows")
    over_http.add_argument("--batch", type=int, default=1000, help="instances per request")
    maps = commands.add_parser("posthoc", help="post-hoc calibration maps on held-out halves")
    maps.add_argument("--model", type=Path, required=True)
    maps.add_argument("--data", required=True)
    maps.add_argument("--format", help="as afm-eval's --format")
    maps.add_argument("--seed", type=int, default=0, help="of the split into halves")
    args = parser.parse_args(argv)
    if args.command == "served":
        print(json.dumps(served(args.model, args.data, args.rows, args.batch)))
    else:
        print(posthoc(args.model, args.data, args.format, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
