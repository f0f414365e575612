"""In-process timings of the request path's pieces, for before/after figures.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python -m bench.micro [--model-dir DIR]

Prints the median over repeats of: FeatureSpace.encode, the onnxruntime run, and the
result assembly (plain and explained) for 1 and 256 instances, in microseconds.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.scenarios import BIG, SEED, instance
from bench.serve import DEFAULT_RUN
from model.bundle import Bundle
from service.explain import Explainer

REPEATS = 7


def timed(fn: Callable[[], object], number: int) -> float:
    """Median over REPEATS of the mean time of `number` calls, in microseconds."""
    fn()
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    return statistics.median(runs) * 1e6


def pieces(bundle: Bundle, explainer: Explainer,
           instances: list[dict[str, Any]]) -> dict[str, Callable[[], object]]:
    encoded = bundle.features.encode(instances)
    scores = bundle.run(encoded.indices, encoded.weights)
    return {
        "encode": lambda: bundle.features.encode(instances),
        "onnxruntime run": lambda: bundle.run(encoded.indices, encoded.weights),
        "results, plain": lambda: explainer.predictions(encoded, scores, False),
        "results, explained": lambda: explainer.predictions(encoded, scores, True),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.micro", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_RUN)
    args = parser.parse_args(argv)
    bundle = Bundle.load(args.model_dir)
    explainer = Explainer(bundle)
    gc.freeze()  # as the service does once started
    rng = np.random.default_rng(SEED)
    fields = bundle.manifest.fields
    print("| piece | 1 instance µs | 256 instances µs |\n|---|---:|---:|")
    cells: dict[str, list[float]] = {}
    for rows in (1, BIG):
        instances = [instance(fields, rng) for _ in range(rows)]
        number = 2000 if rows == 1 else 40
        for name, fn in pieces(bundle, explainer, instances).items():
            cells.setdefault(name, []).append(timed(fn, number))
    for name, (one, big) in cells.items():
        print(f"| {name} | {one:.1f} | {big:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
