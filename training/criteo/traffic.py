"""The generator's rows as a service's traffic, and the clicks its true probabilities decide.

    requests(path, size)   -> Traffic per request: the instances of a generated file (as a
                              client sends them) and their true click probabilities
    clicks(served, ...)    -> events (impression_id, time): which served impressions were
                              clicked, by the generator's probabilities, and when
    write_events(t, path)  -> an events file: CSV, JSON lines or Parquet by its suffix

    python -m training.criteo.traffic --served SERVED.parquet --out events.csv --window 1h [--late 0.05]

SERVED is a table of what was served (`impression_id`, `time`, `probability`: the id the
service returned, when it was sent, the row's true probability), as a loop script records
it while it sends a generated day to the service. Clicks come at least MARGIN after the
impression and MARGIN inside or outside the window, so that a client clock a little before
the service's does not move a click across the window's edges.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from training.config import CriteoOptions
from training.criteo.reader import Reader, sniff
from training.join.window import parse_window

MARGIN = timedelta(seconds=1)
EVENT_SCHEMA = pa.schema([pa.field("impression_id", pa.string(), nullable=False),
                          pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False)])


def instances(rows: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """Rows (label, I1..I13, C1..C26) as a client sends them: numbers for I, strings for C, an
    empty column left out (the service reads an absent field as missing, as training reads
    an empty column)."""
    features = rows.select([name for name in rows.schema.names if name != "label"])
    return [{k: v for k, v in row.items() if v is not None} for row in features.to_pylist()]


@dataclass
class Traffic:
    instances: list[dict[str, Any]]
    probabilities: np.ndarray  # (n,) float64: the generator's click probability of each row
    labels: np.ndarray  # (n,) float32: the clicks the generator drew for the file


def requests(path: Path, size: int) -> Iterator[Traffic]:
    """A generated file (and its FILE.probs.npy) as requests of `size` instances, in order."""
    probabilities = np.load(f"{path}.probs.npy", mmap_mode="r")
    delimiter, header = sniff(Path(path))
    start = 0
    for batch in Reader(Path(path), CriteoOptions(delimiter=delimiter, header=header)).batches():
        for offset in range(0, batch.num_rows, size):
            rows = batch.slice(offset, size)
            yield Traffic(instances(rows), probabilities[start : start + rows.num_rows].astype(np.float64),
                          rows.column("label").to_numpy(zero_copy_only=False))
            start += rows.num_rows


def clicks(served: pa.Table, window: timedelta, seed: int, late: float = 0.0,
           duplicates: float = 0.0) -> pa.Table:
    """Click events for served impressions: each clicked with its `probability`, after a
    delay uniform in [MARGIN, window - MARGIN], or (a `late` share of the clicks) in
    [window + MARGIN, 2 window]; a `duplicates` share of clicks is reported twice."""
    if window <= 2 * MARGIN:
        raise ValueError(f"the window must be longer than {2 * MARGIN}, got {window}")
    rng = np.random.default_rng(seed)
    clicked = rng.random(served.num_rows) < served.column("probability").to_numpy(zero_copy_only=False)
    picked = served.filter(pa.array(clicked))
    ids = picked.column("impression_id")
    twice = rng.random(picked.num_rows) < duplicates
    ids = pa.concat_arrays([ids.combine_chunks(), ids.filter(pa.array(twice)).combine_chunks()])
    late_ones = rng.random(len(ids)) < late
    us, margin = window / timedelta(microseconds=1), MARGIN / timedelta(microseconds=1)
    low = np.where(late_ones, us + margin, margin)
    high = np.where(late_ones, 2 * us, us - margin)
    delay = pa.array(rng.uniform(low, high).astype(np.int64), pa.duration("us"))
    times = picked.column("time").cast(EVENT_SCHEMA.field("time").type).combine_chunks()
    times = pa.concat_arrays([times, times.filter(pa.array(twice))])
    events = pa.table([ids, pc.add(times, delay)], schema=EVENT_SCHEMA)
    return events.sort_by("time")


def write_events(events: pa.Table, path: Path) -> None:
    """CSV (ISO 8601 times), JSON lines ({"impression_id": ..., "time": ...}) or Parquet."""
    path, suffix = Path(path), Path(path).suffix.lower()
    if suffix == ".parquet":
        pq.write_table(events, path)
    elif suffix == ".csv":
        pacsv.write_csv(events, path)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        with path.open("w") as sink:
            for row in events.to_pylist():
                sink.write(json.dumps({k: _json(v) for k, v in row.items()}) + "\n")
    else:
        raise ValueError(f"{path}: an events file ends in .csv, .jsonl or .parquet")


def _json(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def read_served(path: Path) -> pa.Table:
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix == ".csv":
        return pacsv.read_csv(path)
    return pajson.read_json(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.criteo.traffic",
                                     description="Decide clicks on served impressions by their "
                                     "true probabilities and write them as an events file.")
    parser.add_argument("--served", required=True,
                        help="Parquet, CSV or JSON lines: impression_id, time, probability")
    parser.add_argument("--out", required=True, help="events file: .csv, .jsonl or .parquet")
    parser.add_argument("--window", type=parse_window, default="1h",
                        help="the attribution window afm-join will use, e.g. 1h or 30m")
    parser.add_argument("--late", type=float, default=0.0, help="share of clicks after the window")
    parser.add_argument("--duplicates", type=float, default=0.0, help="share of clicks sent twice")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    events = clicks(read_served(Path(args.served)), args.window, args.seed, args.late, args.duplicates)
    write_events(events, Path(args.out))
    print(json.dumps({"events": events.num_rows, "out": args.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
