"""The impression log's writer alone, and what the log adds to a response, in-process.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.impression_writer [--model-dir DIR]

For requests of 1 and 256 instances: the writer thread's work per instance (building the
rows of a drain's records and writing them to Parquet, a file closed every 10 drains as
bench.impressions rolls every 2 s), CPU time, no server; and the /predict response's size
with the log off and on (the log adds each instance's `impression_id`). Without
--model-dir, bench.serve's synthetic AFM.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from bench.scenarios import instance
from bench.serve import DEFAULT_RUN
from model.bundle import Bundle
from model.impressions import impression_ids
from service.app import create_app
from service.ops.impression_files import LogFiles
from service.ops.impression_rows import ImpressionRows, Scored
from service.ops.metrics import ImpressionMetrics
from service.ops.settings import Settings

DRAIN_RECORDS = {1: 400, 256: 50}  # records a 0.2 s drain holds at this machine's rates
ROLL_DRAINS = 10
TOTAL_INSTANCES = 100_000


def writer_us_per_instance(bundle: Bundle, instances: list[dict[str, str]]) -> float:
    encoded = bundle.features.encode(instances)
    scores = bundle.run(encoded.indices, encoded.weights)
    count = TOTAL_INSTANCES // len(instances)
    records = [Scored(time.time_ns() // 1000, f"{i:032x}", "/predict", bundle, scores, instances,
                      encoded, encoded.oov, impression_ids(f"{i:032x}", len(instances)))
               for i in range(count)]
    per_drain = DRAIN_RECORDS[len(instances)]
    rows = ImpressionRows()
    seconds = []
    for _ in range(3):  # the first round pays for imports and the vocabularies' arrays
        files = LogFiles(Path(tempfile.mkdtemp()), "bench", 3600, 1 << 40,
                         ImpressionMetrics(CollectorRegistry()))
        start = time.process_time()
        for drain, first in enumerate(range(0, count, per_drain), 1):
            for key, table in rows.tables(records[first:first + per_drain]):
                files.write(key, table)
            if drain % ROLL_DRAINS == 0:
                files.close()
        files.close()
        seconds.append(time.process_time() - start)
    return min(seconds[1:]) / (count * len(instances)) * 1e6


def response_bytes(model_dir: Path, instances: list[dict[str, str]], log_dir: Path | None) -> int:
    settings = Settings(model_dir=model_dir, impression_log_dir=log_dir, access_log=False)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        return len(client.post("/predict", json={"instances": instances}).content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_RUN)
    args = parser.parse_args()
    pa.set_memory_pool(pa.system_memory_pool())  # as the log's writer does
    bundle = Bundle.load(args.model_dir)
    rng = np.random.default_rng(2017)
    print("| instances a request | writer CPU µs an instance | response bytes, log off | log on |")
    print("|---:|---:|---:|---:|")
    for size in DRAIN_RECORDS:
        instances = [instance(bundle.manifest.fields, rng) for _ in range(size)]
        writer = writer_us_per_instance(bundle, instances)
        off = response_bytes(args.model_dir, instances, None)
        on = response_bytes(args.model_dir, instances, Path(tempfile.mkdtemp()))
        print(f"| {size} | {writer:.2f} | {off:,} | {on:,} ({on / off - 1:+.0%}) |")


if __name__ == "__main__":
    main()
