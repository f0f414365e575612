"""The embedding table as float32 or float16: one finished run's checkpoint exported both
ways (`training.export.write_bundle`), each bundle's size, and what each serves on a
labelled file (afm-eval's metrics) with the largest change of a served probability.

    python -m bench.table_dtype RUN_DIR --data test.tsv --format criteo --out DIR

RUN_DIR is an afm-train --out directory (checkpoint.pt, history.json, manifest.json). Run it
where afm-train ran: the run's data must still be where it was read (its validation shards,
from the data cache, feed the bundle's drift reference and pair importance).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import get_args

import numpy as np

from model.bundle import Bundle
from model.manifest import Manifest
from training.cli import load_eval_data, scored
from training.config import RunConfig
from training.export import Serving, TableDtype, write_bundle
from training.metrics import evaluate_predictions
from training.run import load_checkpoint, prepare_data


def export_both(run: Path, out: Path) -> dict[str, Path]:
    manifest = Manifest.read(run)
    cfg = RunConfig.model_validate(json.loads((run / "history.json").read_text())["config"])
    prepared = prepare_data(cfg)
    model = load_checkpoint(run)
    serving = Serving(manifest.task, manifest.label_range, manifest.negative_keep_rate,
                      manifest.calibration)
    bundles = {}
    for dtype in get_args(TableDtype):
        directory = out / dtype
        shutil.rmtree(directory, ignore_errors=True)
        write_bundle(directory, model, manifest.feature_space(), name=manifest.name,
                     version=manifest.version, serving=serving, validation=prepared.validation,
                     training=manifest.training, data=manifest.data, metrics=manifest.metrics,
                     table_dtype=dtype)
        bundles[dtype] = directory
    return bundles


def compare(bundles: dict[str, Path], data: list[str], fmt: str) -> list[dict[str, object]]:
    rows, served = [], []
    for dtype, directory in bundles.items():
        bundle = Bundle.load(directory)
        labels, _, predictions, oov = scored(bundle, load_eval_data(bundle, data, fmt))
        served.append(predictions)
        files = {p.name: p.stat().st_size for p in sorted(directory.iterdir())
                 if p.name in ("model.onnx", "model.onnx.data", "vocabulary.arrow", "manifest.json")}
        rows.append({"table_dtype": dtype, "bytes": sum(files.values()), "files": files,
                     "rows": len(labels), "oov": oov, **evaluate_predictions(
                         bundle.manifest.task, labels, predictions, bundle.manifest.label_range)})
    rows[-1]["max_abs_prediction_change"] = float(np.max(np.abs(served[-1] - served[0])))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.table_dtype", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished afm-train --out directory")
    parser.add_argument("--data", required=True, nargs="+", help="a labelled file to score")
    parser.add_argument("--format", required=True, help="its format, as afm-eval's --format")
    parser.add_argument("--out", type=Path, required=True, help="where the two bundles go")
    args = parser.parse_args(argv)
    if not (args.run / "checkpoint.pt").is_file():
        print(f"bench.table_dtype: {args.run} holds no finished run (checkpoint.pt)", file=sys.stderr)
        return 2
    try:
        bundles = export_both(args.run, args.out)
    except FileNotFoundError as e:
        print(f"bench.table_dtype: {e.filename} is missing: run this where afm-train ran",
              file=sys.stderr)
        return 2
    for row in compare(bundles, args.data, args.format):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
