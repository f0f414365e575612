"""Joining clicks to the impression log: afm-join (DuckDB) beside the same join in polars'
streaming engine, on a generated day, side by side.

    python -m bench.join --rows 1000000 --rows 10000000 [--repeats 2] [--memory-limit 1GB]

For each size: a day of impressions of a Criteo-shaped model (the generator's rows with
their features, one a `rows`-th of a day apart, four workers' hourly files, written with
model.impressions) and click events on them decided by the generator's probabilities
scaled to a 3% click share (5% of clicks late, 2% sent twice, 1% for no impression), once
under --data-dir and reused. Then, `--repeats` times in alternation, afm-join and the polars
join (`python -m bench.join polars ...`, which needs `pip install polars`; skipped when it
is not installed) each run as its own process; wall and CPU time and peak private memory
(RssAnon of the process tree, sampled every 0.1 s) are recorded. Both must report the same
counts. One JSON line per run goes to --results, a Markdown table of medians to stdout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.criteo import BIN, Stage
from model import impressions as im
from model.features import FieldKind, FieldSpec
from training.criteo import synth, traffic
from training.criteo.reader import CATEGORICALS, INTEGERS

START = datetime(2024, 5, 1, tzinfo=UTC)
WORKERS = 4
CLICK_SHARE = 0.03
FIELDS = ([FieldSpec(name=n, kind=FieldKind.BUCKETIZED) for n in INTEGERS]
          + [FieldSpec(name=n, kind=FieldKind.CATEGORICAL) for n in CATEGORICALS])


def _ids(start: int, n: int, per_request: int = 16) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(request ids of 16 hex digits, positions, impression ids) of rows start..start+n."""
    rows = np.arange(start, start + n)
    request = rows // per_request
    valid = np.ones(n, bool)
    request_ids = pc.binary_join_element_wise(synth.hex_strings(synth.value_ids(0, request, 1), valid),
                                              synth.hex_strings(synth.value_ids(1, request, 2), valid), "")
    positions = pa.array((rows % per_request).astype(np.int32))
    return request_ids, positions, pc.binary_join_element_wise(request_ids, positions.cast(pa.string()), "-")


def impression_table(chunk: synth.Chunk, start: int, rows: int) -> pa.Table:
    n = chunk.table.num_rows
    request_ids, positions, ids = _ids(start, n)
    offsets = (np.arange(start, start + n) * (86_400e6 / rows)).astype(np.int64)
    times = pa.array(offsets, pa.int64()).cast(pa.timestamp("us")).cast(im.TIME_TYPE)
    times = pc.add(times, pa.scalar(START - datetime(1970, 1, 1, tzinfo=UTC), pa.duration("us")))
    features = pa.StructArray.from_arrays(
        [chunk.table.column(c).combine_chunks().cast(pa.float64()) for c in INTEGERS]
        + [chunk.table.column(c).combine_chunks() for c in CATEGORICALS],
        fields=list(im.features_type(FIELDS)))
    logits = np.log(chunk.probs) - np.log1p(-chunk.probs)
    columns = {im.IMPRESSION_ID: ids, im.REQUEST_ID: request_ids, im.POSITION: positions, im.TIME: times,
               im.ROUTE: pa.array(["predict"] * n), im.MODEL_NAME: pa.array(["criteo"] * n),
               im.MODEL_VERSION: pa.array(["1"] * n), im.MODEL_SHA256: pa.array(["0" * 64] * n),
               im.SCORE: logits, im.PREDICTION: chunk.probs, im.OOV: pa.nulls(n, pa.list_(pa.string())),
               im.FEATURES: features}
    schema = im.impression_schema(FIELDS)
    nulls = {name: pa.nulls(n, schema.field(name).type) for name in schema.names if name not in columns}
    return pa.table({**columns, **nulls}, schema=schema)


def generate(root: Path, rows: int, seed: int = 0) -> dict[str, Any]:
    """The day's impression log under root/impressions and its events in root/events.parquet."""
    if (root / "events.parquet").is_file():
        return json.loads((root / "generated.json").read_text())
    shutil.rmtree(root, ignore_errors=True)
    began, served, start = time.perf_counter(), [], 0
    for seq, chunk in enumerate(synth.chunks(synth.World(), rows, seed)):
        table = impression_table(chunk, start, rows)
        im.write_part(root / "impressions", table, f"w{seq % WORKERS}", seq)
        served.append(pa.table({"impression_id": table.column(im.IMPRESSION_ID),
                                "time": table.column(im.TIME),
                                "probability": chunk.probs * (CLICK_SHARE / synth.World().ctr)}))
        start += table.num_rows
    events = traffic.clicks(pa.concat_tables(served), timedelta(hours=1), seed, late=0.05, duplicates=0.02)
    strays = events.num_rows // 100
    events = pa.concat_tables([events, pa.table({
        "impression_id": pa.array([f"stray-{k}" for k in range(strays)]),
        "time": pa.array([START] * strays, im.TIME_TYPE)}, schema=events.schema)])
    events = events.append_column("label", pa.array(np.ones(events.num_rows)))  # read alike by both
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(events, root / "events.parquet")
    record = {"stage": "generate", "impressions": rows, "events": events.num_rows,
              "seconds": round(time.perf_counter() - began, 1),
              "impression_bytes": sum(p.stat().st_size for p in im.part_files(root / "impressions"))}
    (root / "generated.json").write_text(json.dumps(record) + "\n")
    return record


def polars_join(log: Path, events: Path, out: Path, window: timedelta) -> dict[str, int]:
    """The same join in polars' streaming engine: the outcome of each event, the labels,
    and the day written with the features flattened."""
    import polars as pl

    files = [str(p) for p in im.part_files(log)]
    impressions = pl.scan_parquet(files)
    shown = impressions.select("impression_id", pl.col("time").alias("shown"), pl.lit(True).alias("found"))
    delay = pl.col("time") - pl.col("shown")
    outcomes = pl.scan_parquet(events).join(shown, on="impression_id", how="left").select(
        "impression_id", "label",
        outcome=pl.when(pl.col("found").is_null()).then(pl.lit("unmatched"))
        .when(delay < pl.duration(microseconds=0)).then(pl.lit("early"))
        .when(delay > pl.duration(microseconds=window // timedelta(microseconds=1))).then(pl.lit("late"))
        .otherwise(pl.lit("matched"))).collect(engine="streaming")
    counts = {f"events_{k}": v for k, v in outcomes.group_by("outcome").len().iter_rows()}
    labels = outcomes.filter(pl.col("outcome") == "matched").group_by("impression_id").agg(
        pl.col("label").max(), pl.len().alias("events"))
    out.mkdir(parents=True)
    day = impressions.join(labels.lazy().select("impression_id", "label"), on="impression_id", how="left")
    day = day.select(pl.col("label").fill_null(0).cast(pl.Float32), pl.col("features").struct.unnest(),
                     "impression_id", "time", "model_version")
    day.sink_parquet(out / "part-0.parquet", engine="streaming")
    rows = pl.scan_parquet(out / "part-0.parquet").select(pl.len()).collect().item()
    return {**counts, "duplicates": int((labels["events"] - 1).sum()), "rows": rows,
            "positives": labels.filter(pl.col("label") > 0).height}


def run(engine: str, root: Path, out: Path, memory_limit: str) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    if engine == "duckdb":
        command = [str(BIN / "afm-join"), "--impressions", str(root / "impressions"), "--events",
                   str(root / "events.parquet"), "--window", "1h", "--out", str(out),
                   "--memory-limit", memory_limit]
    else:
        command = [str(BIN / "python"), "-m", "bench.join", "polars", str(root), str(out)]
    stage = Stage(engine, command).run()
    counts = json.loads(stage.extra.pop("stdout")[0])
    keys = ("rows", "positives", "duplicates", "events_matched", "events_late", "events_unmatched")
    return {**stage.record(), "counts": {k: counts.get(k, 0) for k in keys},
            "out_bytes": sum(p.stat().st_size for p in out.rglob("*.parquet"))}


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["polars"]:  # the polars run, as its own process
        root, out = Path(sys.argv[2]), Path(sys.argv[3])
        print(json.dumps(polars_join(root / "impressions", root / "events.parquet", out, timedelta(hours=1))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.join", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", required=True, help="repeatable")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-limit", default="1GB", help="afm-join's --memory-limit")
    parser.add_argument("--data-dir", type=Path, default=Path("/work/bench-data/join"))
    parser.add_argument("--results", type=Path, default=Path("/work/bench-data/join-results.jsonl"))
    args = parser.parse_args(argv)
    engines = ["duckdb"] + (["polars"] if importlib.util.find_spec("polars") else [])
    for rows in args.rows:
        root = args.data_dir / f"day-{rows}"
        records = [generate(root, rows)]
        for repeat in range(args.repeats):
            for engine in engines:
                record = {"rows_in": rows, "repeat": repeat, **run(engine, root, root / f"out-{engine}",
                                                                   args.memory_limit)}
                records.append(record)
                print(json.dumps(record), file=sys.stderr)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        report(rows, records[0], records[1:])
    return 0


def report(rows: int, generated: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    print(f"\n{rows:,} impressions ({generated['impression_bytes'] / 2**20:,.0f} MiB of Parquet), "
          f"{generated['events']:,} events")
    print("| engine | runs | wall s (median) | CPU s | impressions/s | peak private MiB | output MiB |\n"
          "|---|---|---|---|---|---|---|")
    for engine in dict.fromkeys(r["stage"] for r in runs):
        mine = [r for r in runs if r["stage"] == engine]
        wall, cpu, peak, size = (statistics.median(r[k] for r in mine)
                                 for k in ("seconds", "cpu_seconds", "peak_rss_anon_mib", "out_bytes"))
        print(f"| {engine} | {len(mine)} | {wall:.1f} | {cpu:.1f} | {rows / wall:,.0f} | {peak:,.0f} | "
              f"{size / 2**20:,.0f} |")
    if len({json.dumps(r["counts"], sort_keys=True) for r in runs}) != 1:
        raise SystemExit(f"the engines disagree: {[r['counts'] for r in runs]}")
    print(f"\ncounts (the same from every run): {json.dumps(runs[0]['counts'])}")


if __name__ == "__main__":
    sys.exit(main())
