"""Console scripts: `afm-train` and `afm-eval`.

A user's mistake ends in one line on stderr and exit status 2 (`training.console`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from model.bundle import Bundle, BundleError
from training import formats
from training.console import DEBUG_HELP, UsageError, read_config, setup_logging, user_errors
from training.data import Dataset
from training.metrics import evaluate_predictions

# Rows an onnxruntime run scores: 512 costs no more CPU a row than 8,192 on a 39-field AFM,
# whose first 8,192-row run grows the arena for its pair tensors (docs/BENCHMARKS.md).
EVAL_BATCH = 512


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="afm-train", description="Train FM/AFM and export a bundle.")
    parser.add_argument("--config", required=True, help="a TOML run config (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. train.epochs=5 (repeatable)")
    parser.add_argument("--out", required=True, help="run directory; the bundle is written here")
    parser.add_argument("--fresh", action="store_true",
                        help="start over instead of resuming from the checkpoints a killed run left in --out")
    parser.add_argument("--prepare-only", action="store_true",
                        help="encode the data into the cache (data.cache_dir) and stop, e.g. before "
                        "a multi-machine run")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    setup_logging()
    from training import distributed  # torch is imported only for training
    from training.checkpoint import CheckpointError
    from training.run import prepare_data, run

    with user_errors("afm-train", args.debug):
        cfg = read_config(args.config, args.overrides)
        context = distributed.start()  # data-parallel when started by torchrun
        finished = False
        if args.prepare_only:
            try:
                prepared = prepare_data(cfg, context=context)
                finished = True
            finally:
                distributed.stop(context, finished)
            if context.is_main:
                print(json.dumps({"train": str(prepared.train.directory), "train_rows": len(prepared.train),
                                  "validation": str(prepared.validation.directory),
                                  "validation_rows": len(prepared.validation)}))
            return 0
        try:
            manifest = run(cfg, Path(args.out), context, fresh=args.fresh)
            finished = True
        except CheckpointError as e:
            raise UsageError(f"cannot resume in {args.out}: {e}") from e
        finally:
            distributed.stop(context, finished)
    if context.is_main:
        print(json.dumps({"bundle": str(Path(args.out).resolve()), "metrics": manifest.metrics}))
    return 0


def data_format(paths: str | list[str], given: str | None) -> str:
    """--format if given, else the one that recognises the (first) path, else libfm. A TOML
    file read as rows is always a mistake, so that combination is refused rather than parsed."""
    path = paths if isinstance(paths, str) else paths[0]
    guessed = formats.guess(path)
    if given is None:
        return guessed or formats.DEFAULT_READ
    if guessed == "tabular" and given != "tabular":
        raise UsageError(f"{path} is a TOML file, i.e. a tabular schema: use --format tabular "
                         "(or leave --format out)")
    return given


def load_eval_data(bundle: Bundle, paths: list[str], fmt: str) -> Dataset | Iterator[Dataset]:
    return formats.reader(fmt)(paths, bundle)


def score(bundle: Bundle, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """-> the rows' scores and served predictions."""
    parts = [
        bundle.run(data.indices[i : i + EVAL_BATCH], data.weights[i : i + EVAL_BATCH])
        for i in range(0, len(data), EVAL_BATCH)
    ]
    return np.concatenate([p.score for p in parts]), np.concatenate([p.prediction for p in parts])


def scored(bundle: Bundle, data: Dataset | Iterator[Dataset]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(labels, scores, predictions, oov) of a dataset, or of a stream of blocks read one at
    a time."""
    blocks = [data] if isinstance(data, Dataset) else data
    labels, scores, predictions, oov = [], [], [], 0
    for block in blocks:
        labels.append(block.labels)
        block_scores, block_predictions = score(bundle, block)
        scores.append(block_scores)
        predictions.append(block_predictions)
        oov += block.oov
    return np.concatenate(labels), np.concatenate(scores), np.concatenate(predictions), oov


def eval_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="afm-eval", description="Score a labelled file with an exported bundle (onnxruntime)."
    )
    parser.add_argument("--model", required=True, help="bundle directory")
    parser.add_argument("--data", required=True, nargs="+", metavar="PATH",
                        help="labelled data, e.g. a held-out test split: one file, or for parquet "
                        "files, directories and globs")
    parser.add_argument("--format", choices=formats.readable(),
                        help="; ".join(f"{name}: {f.describe}" for name, f in formats.FORMATS.items()
                                       if f.read) + "; default: the format that recognises the "
                        f"path (.libfm, .jsonl, .toml, .parquet or a directory of them), else "
                        f"{formats.DEFAULT_READ}")
    parser.add_argument("--scores", help="also write one score per line to this file (the "
                        "additive logit or value, before the calibration map and clipping)")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    with user_errors("afm-eval", args.debug):
        fmt = data_format(args.data, args.format)
        bundle = _bundle(args.model)
        data = load_eval_data(bundle, args.data, fmt)
        labels, scores, predictions, oov = scored(bundle, data)  # a streamed file is read here
    if args.scores:
        np.savetxt(args.scores, scores, fmt="%.9g")
    # the metrics of what the bundle serves: its calibrated probabilities, its clipped values
    result = {"rows": len(labels), "oov": oov, **evaluate_predictions(
        bundle.manifest.task, labels, predictions, bundle.manifest.label_range)}
    print(json.dumps(result))
    return 0


def _bundle(directory: str) -> Bundle:
    if not Path(directory).is_dir():
        raise UsageError(f"no bundle directory {directory}: --model takes the --out directory "
                         "of an afm-train run (it holds model.onnx and manifest.json)")
    try:
        return Bundle.load(directory)
    except BundleError as e:
        raise UsageError(f"{e}; --model takes the --out directory of an afm-train run") from e


if __name__ == "__main__":
    sys.exit(train_main())
