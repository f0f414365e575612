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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from model.bundle import Bundle, BundleError
from model.validation import describe
from training.config import RunConfig, load_config
from training.data import Dataset, binary_labels
from training.metrics import evaluate_predictions

EVAL_BATCH = 8192
USAGE_ERROR = 2
DEBUG_HELP = "on an error, show the Python traceback instead of one line"


class UsageError(Exception):
    """A mistake the user can fix; the message says what and how, in one line."""


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


def _libfm(bundle: Bundle, path: str) -> Dataset:
    from training import libfm

    rows = libfm.read_libfm(path)
    try:
        return libfm.encode(bundle.features, rows, binary_labels(rows.labels, bundle.manifest.task))
    except ValueError as e:
        raise UsageError(f"{path}: {e}: is this the data the model was trained on?") from e


def _jsonl(bundle: Bundle, path: str) -> Dataset:
    instances, labels = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            instances.append(record["instance"])
            labels.append(float(record["label"]))
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{path} line {number}: each line must be "
                             '{"instance": {field: value, ...}, "label": number}') from e
    encoded = bundle.features.encode(instances)
    labelled = binary_labels(np.array(labels, dtype=np.float32), bundle.manifest.task)
    return Dataset(encoded.indices, encoded.weights, labelled, len(encoded.oov))


def _tabular(bundle: Bundle, path: str) -> Dataset:
    from training import tabular

    return tabular.evaluation_data(path, bundle.features, bundle.manifest.task)


def _criteo(bundle: Bundle, path: str) -> Iterator[Dataset]:
    """Blocks of a Criteo-format file (its delimiter and header read off its first line),
    scored one at a time: memory does not grow with the file."""
    from training import criteo

    return criteo.evaluation_data(path, bundle.features, bundle.manifest.task)


# One reader per --format; a new format is one function and one entry here.
READERS: dict[str, Callable[[Bundle, str], Dataset | Iterator[Dataset]]] = {
    "libfm": _libfm, "jsonl": _jsonl, "tabular": _tabular, "criteo": _criteo,
}
# Formats a file's name tells unambiguously; anything else is read as libfm (the default).
SUFFIXES = {".libfm": "libfm", ".jsonl": "jsonl", ".toml": "tabular"}
DEFAULT_FORMAT = "libfm"


def data_format(path: str, given: str | None) -> str:
    """--format if given, else the one the file's suffix names. A TOML file read as rows is
    always a mistake, so that combination is refused rather than parsed."""
    guessed = SUFFIXES.get(Path(path).suffix.lower())
    if given is None:
        return guessed or DEFAULT_FORMAT
    if guessed == "tabular" and given != "tabular":
        raise UsageError(f"{path} is a TOML file, i.e. a tabular schema: use --format tabular "
                         "(or leave --format out)")
    return given


def load_eval_data(bundle: Bundle, path: str, fmt: str) -> Dataset | Iterator[Dataset]:
    if fmt not in READERS:
        raise UsageError(f"unknown data format {fmt!r}: one of {', '.join(READERS)}")
    return READERS[fmt](bundle, path)


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
    parser.add_argument("--data", required=True, help="any labelled file, e.g. a held-out test split")
    parser.add_argument("--format", choices=list(READERS),
                        help="libfm rows, JSON lines of {\"instance\": {...}, \"label\": y}, or "
                        "a tabular schema file (its validation split, or all rows with "
                        "split.method = 'none'), or criteo rows (label, I1..I13, C1..C26); "
                        "default: from the file's suffix "
                        f"({', '.join(f'{s} {f}' for s, f in SUFFIXES.items())}), else {DEFAULT_FORMAT}")
    parser.add_argument("--scores", help="also write one score per line to this file (the "
                        "additive logit or value, before the calibration map and clipping)")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    with _user_errors("afm-eval", args.debug):
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
