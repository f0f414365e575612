"""Click events from CSV, JSON lines or Parquet, checked and brought to one shape.

An event names the impression it belongs to and when it happened, and optionally a label
value (for outcomes other than a click; 1 when absent or null). Times are ISO 8601 strings
(with an offset, or UTC when without), Parquet timestamps (UTC when naive), or Unix seconds.
Each file is read in bounded blocks and written out as Parquet of `EVENTS` for the join;
a bad row ends the read with its file and row number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from model.impressions import TIME_TYPE, visible
from training.errors import UsageError

EVENTS = pa.schema([pa.field("impression_id", pa.string(), nullable=False),
                    pa.field("time", TIME_TYPE, nullable=False),
                    pa.field("label", pa.float64(), nullable=False)])
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
BLOCK_BYTES = 1 << 22
TIME_HELP = "an ISO 8601 time such as 2024-05-01T10:00:00Z, or Unix seconds"


@dataclass(frozen=True)
class EventColumns:
    """The names of an events file's columns."""

    id: str = "impression_id"
    time: str = "time"
    label: str = "label"


def event_format(path: Path) -> str:
    """csv, jsonl or parquet, from the name (a .gz after .csv or .jsonl is read through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None or fmt == "parquet" and path.suffix.lower() == ".gz":
        raise UsageError(f"events file {path}: unknown format; name it .csv, .jsonl or .parquet "
                         "(.csv.gz and .jsonl.gz are read too)")
    return fmt


def event_files(paths: Sequence[str]) -> list[Path]:
    """The files named, a folder standing for the event files under it."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and visible(p, path)
                           and _known(p))
            if not found:
                raise UsageError(f"no event files (.csv, .jsonl, .parquet) under {path}")
            files.extend(found)
        elif path.is_file():
            event_format(path)
            files.append(path)
        else:
            raise UsageError(f"no events file {path}")
    return files


def _known(path: Path) -> bool:
    try:
        event_format(path)
    except UsageError:
        return False
    return True


def normalise(path: Path, columns: EventColumns, out: Path) -> int:
    """Read one events file into `out` (a Parquet file of EVENTS); returns its rows."""
    rows = 0
    with pq.ParquetWriter(out, EVENTS) as writer:
        for batch in _blocks(path, columns):
            writer.write_batch(_shaped(batch, columns, path, rows))
            rows += batch.num_rows
    return rows


def _blocks(path: Path, columns: EventColumns) -> Iterator[pa.RecordBatch]:
    fmt = event_format(path)
    if path.stat().st_size == 0:  # a collector's file for an hour without events
        return
    try:
        if fmt == "parquet":
            yield from _parquet(path, columns)
        else:
            reader = _csv(path, columns) if fmt == "csv" else _jsonl(path)
            _require(path, reader.schema.names, columns)
            yield from reader
    except (pa.ArrowInvalid, OSError) as e:
        raise UsageError(f"events file {path} is malformed: {' '.join(str(e).split())}") from e


def _parquet(path: Path, columns: EventColumns) -> Iterator[pa.RecordBatch]:
    source = pq.ParquetFile(path)
    names = source.schema_arrow.names
    _require(path, names, columns)
    wanted = [c for c in (columns.id, columns.time, columns.label) if c in names]
    yield from source.iter_batches(batch_size=1 << 16, columns=wanted)


def _csv(path: Path, columns: EventColumns) -> pa.RecordBatchReader:
    stream = pa.input_stream(str(path), compression="detect")
    types = {columns.id: pa.string(), columns.time: pa.string()}
    return pacsv.open_csv(stream, pacsv.ReadOptions(block_size=BLOCK_BYTES),
                          convert_options=pacsv.ConvertOptions(column_types=types,
                                                               strings_can_be_null=True))


def _jsonl(path: Path) -> pa.RecordBatchReader:
    return pajson.open_json(path, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES))


def _require(path: Path, names: Sequence[str], columns: EventColumns) -> None:
    for role, name, option in (("impression id", columns.id, "--id-column"),
                               ("time", columns.time, "--time-column")):
        if name not in names:
            raise UsageError(f"events file {path} has no {role} column {name!r} (it has "
                             f"{', '.join(names) or 'none'}); {option} names another")


def _shaped(batch: pa.RecordBatch, columns: EventColumns, path: Path, before: int) -> pa.RecordBatch:
    names = batch.schema.names
    ids = batch.column(names.index(columns.id))
    _no_nulls(ids, "impression id", path, before)
    times = times_of(batch.column(names.index(columns.time)), path, before)
    labels = (labels_of(batch.column(names.index(columns.label)), path, before)
              if columns.label in names else pa.array([1.0] * batch.num_rows, pa.float64()))
    return pa.record_batch([ids.cast(pa.string()), times, labels], schema=EVENTS)


def _no_nulls(values: pa.Array, what: str, path: Path, before: int) -> None:
    if values.null_count:
        row = before + 1 + pc.index(values.is_null(), True).as_py()
        raise UsageError(f"events file {path} row {row} has no {what}")


def labels_of(values: pa.Array, path: Path, before: int) -> pa.Array:
    """Label values as float64; a null label is 1 (a click)."""
    try:
        numbers = values.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        row, value = _first_bad(values, lambda v: float(v))
        raise UsageError(f"events file {path} row {before + row + 1}: label {value!r} is not a number") from e
    return numbers.fill_null(1.0)


def times_of(values: pa.Array, path: Path, before: int) -> pa.Array:
    """Event times as timestamp[us, UTC]: from timestamps, dates, ISO 8601 strings or Unix seconds."""
    _no_nulls(values, "time", path, before)
    try:
        return _times(values)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        pass
    parsed = []  # a bad value, or forms mixed in one block: one value at a time
    for row, value in enumerate(values.to_pylist()):
        try:
            parsed.append(_times(pa.array([value])))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
            raise UsageError(f"events file {path} row {before + row + 1}: time {value!r} is not "
                             f"{TIME_HELP}") from e
    return pa.concat_arrays(parsed)


def _times(values: pa.Array) -> pa.Array:
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):  # naive: taken as UTC
        return pc.cast(pc.cast(values, pa.timestamp("us"), safe=False) if not
                       getattr(kind, "tz", None) else values, TIME_TYPE, safe=False)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _seconds(values.cast(pa.float64()))
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise ValueError(f"a time cannot be of type {kind}")
    for attempt in (lambda: values.cast(TIME_TYPE), lambda: values.cast(pa.timestamp("us")).cast(TIME_TYPE),
                    lambda: _seconds(values.cast(pa.float64()))):
        try:
            return attempt()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
            continue
    raise ValueError("unparseable times")


def _seconds(values: pa.Array) -> pa.Array:
    if not pc.all(pc.is_finite(values)).as_py():
        raise ValueError("a time is not a finite number")
    micros = pc.cast(pc.round(pc.multiply(values, 1e6)), pa.int64())
    return micros.cast(pa.timestamp("us")).cast(TIME_TYPE)


def _first_bad(values: pa.Array, parse: Callable[[Any], object]) -> tuple[int, Any]:
    """(index, value) of the first value that does not parse alone."""
    for index, value in enumerate(values.to_pylist()):
        try:
            parse(value)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, TypeError):
            return index, value
    return -1, None
