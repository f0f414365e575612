"""Parquet input against Criteo-format text: the same generated log both ways, prepared side by side.

    python -m bench.parquet --rows 2000000 --repeats 3      # reader speed, pass by pass
    python -m bench.parquet --rows 10000000 --repeats 1     # private memory at scale

For each size: generate a training log and a validation log a tenth its size under --data-dir
(once; reused), as text (`python -m training.criteo.synth --out`, the files bench.criteo
uses) and as Parquet day partitions of the same rows (`--parquet DIR --days N`). Then, per
repeat, for each format in turn (the order alternates between repeats), `afm-train --config
configs/criteo-fm.toml --prepare-only` into an empty cache: pass 1 counts the training log,
pass 2 encodes both logs into shards. Each preparation is its own process, its private memory
(RssAnon, summed over the process tree) sampled every 0.1 s as bench.criteo does; the passes'
rows/s come from the run's log lines. One JSON line per stage goes to --results; a Markdown
table of medians to stdout.

Run it in the background with OMP_NUM_THREADS=1 (which also sizes Arrow's thread pool).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.criteo import BIN, REPO, Stage, du_bytes, generate, prepare

FORMATS = ("criteo", "parquet")


def generate_parquet(directory: Path, rows: int, seed: int, days: int) -> dict[str, Any]:
    if Path(f"{directory}.truth.json").is_file() and directory.is_dir():
        return {"stage": "generate", "file": str(directory), "reused": True}
    shutil.rmtree(directory, ignore_errors=True)
    stage = Stage("generate", [str(BIN / "python"), "-m", "training.criteo.synth", "--rows", str(rows),
                               "--parquet", str(directory), "--days", str(days), "--seed", str(seed)]).run()
    return {**stage.record(), "file": str(directory), "bytes": du_bytes(directory),
            "rows_per_s": round(rows / stage.seconds)}


def logs(data_dir: Path, rows: int, days: int) -> tuple[dict[str, tuple[Path, Path]], list[dict[str, Any]]]:
    """{format: (train, validation)} and the generation records."""
    tag = f"{rows // 1_000_000}M" if rows >= 1_000_000 else str(rows)
    valid_rows = max(rows // 10, 1000)
    text = (data_dir / f"criteo-{tag}.train.tsv", data_dir / f"criteo-{tag}.valid.tsv")
    table = (data_dir / f"criteo-{tag}.train.parquet", data_dir / f"criteo-{tag}.valid.parquet")
    records = [generate(text[0], rows, 0, 1.0, 4), generate(text[1], valid_rows, 1, 1.0, 4),
               generate_parquet(table[0], rows, 0, days), generate_parquet(table[1], valid_rows, 1, 1)]
    return {"criteo": text, "parquet": table}, records


def prepare_fresh(fmt: str, train: Path, validation: Path, cache: Path) -> dict[str, Any]:
    shutil.rmtree(cache, ignore_errors=True)
    config = str(REPO / "configs" / "criteo-fm.toml")
    record = prepare(config, train, validation, cache, f"prepare-{fmt}", (f"data.format={fmt}",))
    shutil.rmtree(cache, ignore_errors=True)
    return {**record, "format": fmt}


def rates(record: dict[str, Any], kind: str, file: Path) -> tuple[float, float]:
    """(rows per second of wall time, rows per second of CPU time) of one pass over a file."""
    done = next(p for p in record["passes"] if p["pass"] == kind and p["file"] == file.name)
    return done["rows_per_s"], done["rows"] / max(done["cpu_seconds"], 1e-9)


def report(rows: int, runs: list[dict[str, Any]], paths: dict[str, tuple[Path, Path]]) -> None:
    print(f"\n{rows:,} rows, medians of {len(runs) // len(FORMATS)} runs each; rows/s of wall time "
          "(of CPU time)\n")
    print("| input | pass 1: count (train) | pass 2: encode (train) | pass 2: encode (validation) "
          "| prepare, wall (CPU) | peak private memory | input on disk |")
    print("|---|---|---|---|---|---|---|")
    medians: dict[str, dict[str, float]] = {}
    for fmt in FORMATS:
        mine = [r for r in runs if r["format"] == fmt]
        train, validation = paths[fmt]
        m = {"wall": statistics.median(r["seconds"] for r in mine),
             "cpu": statistics.median(r["cpu_seconds"] for r in mine),
             "memory": max(r["peak_rss_anon_mib"] for r in mine)}
        for name, kind, file in (("count", "counting", train), ("encode", "encoding", train),
                                 ("encode_valid", "encoding", validation)):
            m[name] = statistics.median(rates(r, kind, file)[0] for r in mine)
            m[f"{name}_cpu"] = statistics.median(rates(r, kind, file)[1] for r in mine)
        medians[fmt] = m
        size = du_bytes(train) if train.is_dir() else train.stat().st_size
        passes = " | ".join(f"{m[n]:,.0f} ({m[n + '_cpu']:,.0f})"
                            for n in ("count", "encode", "encode_valid"))
        print(f"| {'Criteo text' if fmt == 'criteo' else 'Parquet'} | {passes} | {m['wall']:.1f} s "
              f"({m['cpu']:.1f} s) | {m['memory']:,.0f} MiB | {size / 2**30:.2f} GiB |")
    text, table = medians["criteo"], medians["parquet"]
    print(f"\nParquet / text, rows per CPU second: pass 1 {table['count_cpu'] / text['count_cpu']:.2f}x, "
          f"pass 2 {table['encode_cpu'] / text['encode_cpu']:.2f}x; per wall second: pass 1 "
          f"{table['count'] / text['count']:.2f}x, pass 2 {table['encode'] / text['encode']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parquet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", required=True, help="repeatable")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--days", type=int, default=7, help="day partitions of the training log")
    parser.add_argument("--data-dir", type=Path, default=Path("/work/bench-data"))
    parser.add_argument("--results", type=Path, default=Path("/work/bench-data/parquet-results.jsonl"))
    args = parser.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    for rows in args.rows:
        paths, records = logs(args.data_dir, rows, args.days)
        runs = []
        for repeat in range(args.repeats):
            for fmt in FORMATS if repeat % 2 == 0 else FORMATS[::-1]:
                train, validation = paths[fmt]
                runs.append(prepare_fresh(fmt, train, validation, args.data_dir / f"cache-bench-{fmt}"))
        with args.results.open("a") as f:
            for record in [*records, *runs]:
                f.write(json.dumps({"rows": rows, **record}) + "\n")
        report(rows, runs, paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
