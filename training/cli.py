"""Console scripts: `afm-train` and `afm-eval`.

A user's mistake (a missing file, a mistyped `--set` key, a bundle that does not load, data
that does not fit the model) ends in one line on stderr naming the problem and what to do,
and exit status 2, as `afm-serve` does; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from model.bundle import Bundle, BundleError
from model.validation import describe
from training import formats
from training.config import RunConfig, load_config
from training.data import Dataset
from training.errors import UsageError
from training.metrics import evaluate_scores

# Rows an onnxruntime run scores: a 39-field AFM's pair tensors for 8,192 rows spill out of
# the caches (2.8x the CPU a row of 512-row runs, bench/loop.py's afm-eval on a Criteo model).
EVAL_BATCH = 512
USAGE_ERROR = 2
DEBUG_HELP = "on an error, show the Python traceback instead of one line"


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@contextmanager
def _user_errors(prog: str, debug: bool) -> Iterator[None]:
    """Turn the errors a user's input causes into one line and exit status 2."""
    try:
        yield
    except (UsageError, BundleError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            PermissionError, ValueError) as e:
        if debug:
            raise
        # ValueError is what this code base raises for bad data and arguments.
        print(f"{prog}: {_one_line(e)}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from e


def _one_line(error: Exception) -> str:
    if isinstance(error, FileNotFoundError):
        return f"cannot read {error.filename}: {error.strerror}"
    if isinstance(error, IsADirectoryError | NotADirectoryError | PermissionError):  # read or write
        return f"cannot use {error.filename}: {error.strerror}"
    text = " ".join(str(error).split())
    if isinstance(error, UsageError | BundleError):
        return text
    return f"{text} (--debug shows where)"


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
    _logging()
    from training import distributed  # torch is imported only for training
    from training.checkpoint import CheckpointError
    from training.run import prepare_data, run

    with _user_errors("afm-train", args.debug):
        cfg = _config(args.config, args.overrides)
        if args.prepare_only:
            prepared = prepare_data(cfg)
            print(json.dumps({"train": str(prepared.train.directory), "train_rows": len(prepared.train),
                              "validation": str(prepared.validation.directory),
                              "validation_rows": len(prepared.validation)}))
            return 0
        context = distributed.start()  # data-parallel when started by torchrun
        try:
            manifest = run(cfg, Path(args.out), context, fresh=args.fresh)
        except CheckpointError as e:
            raise UsageError(f"cannot resume in {args.out}: {e}") from e
        finally:
            distributed.stop(context)
    if context.is_main:
        print(json.dumps({"bundle": str(Path(args.out).resolve()), "metrics": manifest.metrics}))
    return 0


def _config(path: str, overrides: list[str]) -> RunConfig:
    if not Path(path).is_file():
        raise UsageError(f"no config file {path}: --config takes a TOML run config, e.g. "
                         "configs/synthetic-afm.toml")
    try:
        return load_config(path, overrides)
    except ValidationError as e:
        source = f"{path} with --set" if overrides else path
        raise UsageError(f"invalid config {source}: "
                         f"{describe(e.errors(include_url=False), RunConfig, 'the config')}") from e
    except ValueError as e:  # TOML syntax, or an override that is not key=value
        raise UsageError(f"config {path}: {' '.join(str(e).split())}") from e


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


def score(bundle: Bundle, data: Dataset) -> np.ndarray:
    parts = [
        bundle.run(data.indices[i : i + EVAL_BATCH], data.weights[i : i + EVAL_BATCH]).score
        for i in range(0, len(data), EVAL_BATCH)
    ]
    return np.concatenate(parts)


def scored(bundle: Bundle, data: Dataset | Iterator[Dataset]) -> tuple[np.ndarray, np.ndarray, int]:
    """(labels, scores, oov) of a dataset, or of a stream of blocks read one at a time."""
    blocks = [data] if isinstance(data, Dataset) else data
    labels, scores, oov = [], [], 0
    for block in blocks:
        labels.append(block.labels)
        scores.append(score(bundle, block))
        oov += block.oov
    return np.concatenate(labels), np.concatenate(scores), oov


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
    parser.add_argument("--scores", help="also write one raw score per line to this file")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    with _user_errors("afm-eval", args.debug):
        fmt = data_format(args.data, args.format)
        bundle = _bundle(args.model)
        data = load_eval_data(bundle, args.data, fmt)
        labels, scores, oov = scored(bundle, data)  # a streamed file is read here
    if args.scores:
        np.savetxt(args.scores, scores, fmt="%.9g")
    result = {"rows": len(labels), "oov": oov,
              **evaluate_scores(bundle.manifest.task, labels, scores, bundle.manifest.label_range)}
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
