"""Console scripts: `afm-train` and `afm-eval`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from model.bundle import Bundle
from training.data import Dataset, binary_labels
from training.metrics import evaluate_scores

EVAL_BATCH = 8192


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="afm-train", description="Train FM/AFM and export a bundle.")
    parser.add_argument("--config", required=True, help="a TOML run config (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. train.epochs=5 (repeatable)")
    parser.add_argument("--out", required=True, help="run directory; the bundle is written here")
    args = parser.parse_args(argv)
    _logging()
    from training.config import load_config  # torch is imported only for training
    from training.run import run

    cfg = load_config(args.config, args.overrides)
    manifest = run(cfg, Path(args.out))
    print(json.dumps({"bundle": str(Path(args.out).resolve()), "metrics": manifest.metrics}))
    return 0


def load_eval_data(bundle: Bundle, path: str, fmt: str) -> Dataset:
    task = bundle.manifest.task
    if fmt == "libfm":
        from training import libfm

        rows = libfm.read_libfm(path)
        return libfm.encode(bundle.features, rows, binary_labels(rows.labels, task))
    if fmt == "jsonl":
        records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        encoded = bundle.features.encode([r["instance"] for r in records])
        labels = binary_labels(np.array([r["label"] for r in records], dtype=np.float32), task)
        return Dataset(encoded.indices, encoded.weights, labels, len(encoded.oov))
    if fmt == "tabular":
        from training import tabular

        return tabular.evaluation_data(path, bundle.features, task)
    raise ValueError(f"unknown data format {fmt!r}")


def score(bundle: Bundle, data: Dataset) -> np.ndarray:
    parts = [
        bundle.run(data.indices[i : i + EVAL_BATCH], data.weights[i : i + EVAL_BATCH]).score
        for i in range(0, len(data), EVAL_BATCH)
    ]
    return np.concatenate(parts)


def eval_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="afm-eval", description="Score a labelled file with an exported bundle (onnxruntime)."
    )
    parser.add_argument("--model", required=True, help="bundle directory")
    parser.add_argument("--data", required=True, help="any labelled file, e.g. a held-out test split")
    parser.add_argument("--format", default="libfm", choices=["libfm", "jsonl", "tabular"],
                        help="libfm rows, JSON lines of {\"instance\": {...}, \"label\": y}, or "
                        "a tabular schema file (its validation split, or all rows with "
                        "split.method = 'none')")
    parser.add_argument("--scores", help="also write one raw score per line to this file")
    args = parser.parse_args(argv)
    bundle = Bundle.load(args.model)
    data = load_eval_data(bundle, args.data, args.format)
    scores = score(bundle, data)
    if args.scores:
        np.savetxt(args.scores, scores, fmt="%.9g")
    result = {"rows": len(data), "oov": data.oov,
              **evaluate_scores(bundle.manifest.task, data.labels, scores, bundle.manifest.label_range)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
