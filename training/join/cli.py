"""`afm-join`: a day of served impressions, labelled by the click events that followed them.

    afm-join --impressions LOG_DIR --events clicks.csv [more ...] --window 1h --out DAY_DIR

Writes DAY_DIR as Parquet parts that `afm-train` reads with `[data] format = "parquet"`:
`label` (float32: 1 for an impression with an event in its window, the largest label value
when events carry one, else 0), the model's fields as columns, and `impression_id`, `time`
and `model_version` to trace each row. Every impression of the chosen model becomes exactly
one row. Prints one JSON line of counts on stdout and a summary on stderr; the counts are
also kept in DAY_DIR/_join.json. A mistake in the input ends in one line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import duckdb

from training.console import DEBUG_HELP, UsageError, user_errors
from training.join import engine
from training.join.events import EventColumns, event_files, normalise
from training.join.report import Report
from training.join.selection import ModelChoice, Selection, select
from training.join.window import parse_window

TRACE = ("label", "impression_id", "time", "model_version", "prediction", "shadow_model_version",
         "shadow_prediction")
COUNTS_FILE = "_join.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="afm-join", description="Label a day of the service's "
                                     "impression log with click events, as a Parquet training day.")
    parser.add_argument("--impressions", required=True, help="the impression log directory")
    parser.add_argument("--events", required=True, nargs="+", metavar="PATH",
                        help="event files (.csv, .jsonl, .parquet; .gz for text) or folders of them")
    parser.add_argument("--window", required=True,
                        help="attribution window: an event counts if it comes this long after "
                        "its impression at most, e.g. 1h, 30m, 1h30m")
    parser.add_argument("--out", required=True, help="the training day's directory (new or empty)")
    parser.add_argument("--model", metavar="NAME[:VERSION]",
                        help="join this model's impressions only (needed when the log holds "
                        "more than one model or feature schema)")
    defaults = EventColumns()
    parser.add_argument("--id-column", default=defaults.id, help="events' impression id column")
    parser.add_argument("--time-column", default=defaults.time, help="events' time column")
    parser.add_argument("--label-column", default=defaults.label,
                        help="events' optional label column (absent or null: 1)")
    parser.add_argument("--memory-limit", default=engine.Limits.memory,
                        help="DuckDB's memory limit; beyond it the join spills to disk beside --out")
    parser.add_argument("--threads", type=int, default=engine.Limits.threads)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with user_errors("afm-join", args.debug):
        window = _window(args.window)
        choice = ModelChoice.parse(args.model) if args.model else None
        columns = EventColumns(args.id_column, args.time_column, args.label_column)
        limits = engine.Limits(args.memory_limit, args.threads)
        selection = select(Path(args.impressions), choice)
        _check_field_names(selection)
        files = event_files(args.events)
        out = _new_directory(Path(args.out))
        began = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".afm-join-", dir=out.parent) as scratch:
            work = Path(scratch)
            report = _join(selection, files, columns, window, work, limits)
            report.seconds = time.perf_counter() - began
            (work / "day" / COUNTS_FILE).write_text(json.dumps(report.counts(), indent=1) + "\n")
            _publish(work / "day", out)
    print(json.dumps(report.counts()))
    print(report.summary(), file=sys.stderr)
    return 0


def _join(selection: Selection, files: list[Path], columns: EventColumns, window: timedelta,
          work: Path, limits: engine.Limits) -> Report:
    (work / "events").mkdir()
    normalised, read = [], 0
    for k, path in enumerate(files):
        normalised.append(work / "events" / f"{k:05d}.parquet")
        read += normalise(path, columns, normalised[-1])
    try:
        outcome = engine.join(selection.log, selection.files, normalised, selection.versions,
                              window, work / "day", limits, work / "spill")
    except duckdb.OutOfMemoryException as e:
        raise UsageError(f"the join ran out of memory with --memory-limit {limits.memory}: "
                         "raise it, or free disk beside --out for spilling") from e
    report = Report(selection, outcome, read, window)
    report.check()
    return report


def _window(text: str) -> timedelta:
    try:
        return parse_window(text)
    except ValueError as e:
        raise UsageError(f"--window: {e}") from e


def _check_field_names(selection: Selection) -> None:
    names = [selection.features.field(i).name for i in range(selection.features.num_fields)]
    taken = sorted(set(names) & set(TRACE))
    if taken:
        raise UsageError(f"the model has fields named {', '.join(taken)}, which a training day "
                         f"uses for its own columns ({', '.join(TRACE)})")


def _new_directory(out: Path) -> Path:
    """--out, which must not exist or be empty: a day is written whole, never into another."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty directory: give a new one")
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    return out.absolute()


def _publish(day: Path, out: Path) -> None:
    """Move the finished day to --out in one rename (same filesystem), so no reader sees a
    half-written day."""
    if out.is_dir():
        out.rmdir()
    os.rename(day, out)


if __name__ == "__main__":
    sys.exit(main())
