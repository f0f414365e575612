"""The impression log: what the service scored, as Parquet (torch-free; docs/IMPRESSIONS.md).

One row per scored instance; files under `DIR/date=YYYY-MM-DD/hour=HH/part-<worker>-<seq>.parquet`
(UTC hour of the rows' `time`), each written under a hidden name and renamed when complete,
so a reader that skips names starting with `.` or `_` (as pyarrow.dataset does) never sees
half a file. The service writes it; `afm-join` reads it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.features import FieldKind, FieldSpec

FORMAT_VERSION = "1"
VERSION_KEY = b"afm.impressions.version"

IMPRESSION_ID = "impression_id"
REQUEST_ID = "request_id"
POSITION = "position"
TIME = "time"
ROUTE = "route"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
MODEL_SHA256 = "model_sha256"
SCORE = "score"
PREDICTION = "prediction"
OOV = "oov"
FEATURES = "features"
SHADOW_MODEL_VERSION = "shadow_model_version"
SHADOW_SCORE = "shadow_score"
SHADOW_PREDICTION = "shadow_prediction"

TIME_TYPE = pa.timestamp("us", tz="UTC")
STATISTICS = (TIME, MODEL_NAME, MODEL_VERSION)  # the columns whose row groups carry min/max
PART_NAME = re.compile(r"^part-(?P<worker>.+)-(?P<seq>\d+)\.parquet$")


def field_type(spec: FieldSpec) -> pa.DataType:
    """A field's value as the model read it: a string, a list of strings, or a number."""
    if spec.kind == FieldKind.CATEGORICAL:
        return pa.string()
    if spec.kind == FieldKind.MULTI:
        return pa.list_(pa.string())
    return pa.float64()


def features_type(fields: Sequence[FieldSpec]) -> pa.StructType:
    """One child per model field, in the model's order; a null child is a missing value."""
    return pa.struct([pa.field(spec.name, field_type(spec)) for spec in fields])


def impression_schema(fields: Sequence[FieldSpec]) -> pa.Schema:
    """The schema of every impression file of a model with these fields."""
    return pa.schema([
        pa.field(IMPRESSION_ID, pa.string(), nullable=False),
        pa.field(REQUEST_ID, pa.string(), nullable=False),
        pa.field(POSITION, pa.int32(), nullable=False),
        pa.field(TIME, TIME_TYPE, nullable=False),
        pa.field(ROUTE, pa.string(), nullable=False),
        pa.field(MODEL_NAME, pa.string(), nullable=False),
        pa.field(MODEL_VERSION, pa.string(), nullable=False),
        pa.field(MODEL_SHA256, pa.string(), nullable=False),
        pa.field(SCORE, pa.float64(), nullable=False),
        pa.field(PREDICTION, pa.float64()),  # the value served (the graph's prediction)
        pa.field(OOV, pa.list_(pa.string())),
        pa.field(FEATURES, features_type(fields), nullable=False),
        pa.field(SHADOW_MODEL_VERSION, pa.string()),  # null without a shadow model
        pa.field(SHADOW_SCORE, pa.float64()),
        pa.field(SHADOW_PREDICTION, pa.float64()),
    ], metadata={VERSION_KEY: FORMAT_VERSION.encode()})


def feature_values(fields: Sequence[FieldSpec], instance: Mapping[str, Any]) -> dict[str, Any]:
    """An instance's values as the log records them (the `features` struct's row), after
    FeatureSpace.encode accepted it: what the model read, so that a row read back from the
    log encodes exactly as the instance did. Missing (absent, null, or "" where the field
    learns a missing index) is None; a categorical integer is its string; a multi-valued
    scalar a one-value list; a number a float."""
    return {spec.name: logged_value(spec, instance.get(spec.name)) for spec in fields}


def logged_value(spec: FieldSpec, value: Any) -> Any:
    """One field's value as `feature_values` records it."""
    if value is None or value == "" and spec.missing == "learned":
        return None
    if spec.kind == FieldKind.CATEGORICAL:
        return str(value)
    if spec.kind == FieldKind.MULTI:
        return [str(v) for v in (value if isinstance(value, list) else [value])]
    return float(value)


def features_array(fields: Sequence[FieldSpec], instances: Sequence[Mapping[str, Any]]) -> pa.StructArray:
    """The `features` column of instances: `feature_values` of each, built a field at a time
    (pyarrow converts a column of plain values in one call, several times faster than a dict
    per row; tests/model/test_impressions.py keeps the two identical)."""
    columns = [values_column(spec, [instance.get(spec.name) for instance in instances])
               for spec in fields]
    return pa.StructArray.from_arrays(columns, fields=list(features_type(fields)))


def values_column(spec: FieldSpec, values: list[Any]) -> pa.Array:
    """One field's values (as instances hold them) as its child of `features`: pyarrow's
    conversion where it converts as `logged_value` does; a column holding any other value
    (an integer for a categorical field, a scalar for a multi-valued one, "" for a number)
    goes value by value."""
    try:
        if spec.kind == FieldKind.CATEGORICAL:
            column = pa.array(values, pa.string())  # refuses anything but str and None
            return _null_empty(column) if spec.missing == "learned" else column
        if spec.kind != FieldKind.MULTI:
            return pa.array(values, pa.float64())  # ints, floats, None; refuses "" and 2**53+
        if all(type(v) is list or v is None for v in values):  # pyarrow splits a str into characters
            return pa.array(values, pa.list_(pa.string()))
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    return pa.array([logged_value(spec, v) for v in values], field_type(spec))


def _null_empty(column: pa.Array) -> pa.Array:
    if not pc.any(pc.equal(column, "")).as_py():
        return column
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


def impression_id(request_id: str, position: int) -> str:
    return f"{request_id}-{position}"


def impression_ids(request_id: str, count: int) -> list[str]:
    """`impression_id` of positions 0 .. count - 1, as a request's response gives them (from
    position strings made once: a few times faster than formatting each)."""
    if count > len(_POSITIONS):
        return [impression_id(request_id, position) for position in range(count)]
    prefix = request_id + "-"
    return [prefix + position for position in _POSITIONS[:count]]


_POSITIONS = [str(position) for position in range(4096)]


def partition(root: Path, hour: datetime) -> Path:
    """The folder of an hour's files: root/date=YYYY-MM-DD/hour=HH (UTC)."""
    hour = hour.astimezone(UTC)
    return Path(root) / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def part_name(worker: str, seq: int) -> str:
    if not worker or "/" in worker or worker[0] in "._":
        raise ValueError(f"a worker name must be non-empty, without '/' and not start with . or _, "
                         f"got {worker!r}")
    return f"part-{worker}-{seq:06d}.parquet"


def visible(path: Path, root: Path) -> bool:
    """Whether a reader sees this file: no part of its path under root starts with . or _."""
    return not any(part[0] in "._" for part in path.relative_to(root).parts)


def part_files(root: Path) -> list[Path]:
    """Every complete Parquet file under root (hidden and in-progress ones skipped), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(20, "not a directory", str(root))
    return sorted(p for p in root.rglob("*.parquet") if p.is_file() and visible(p, root))


class PartFile:
    """One file of the log: open under a hidden name, write batches, close to publish it.

    `close()` flushes, fsyncs and renames it to its final name (a crash before leaves only a
    hidden file, which readers skip); `abort()` (or an exception inside `with`) removes it."""

    def __init__(self, root: Path, hour: datetime, worker: str, seq: int, schema: pa.Schema) -> None:
        directory = partition(root, hour)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / part_name(worker, seq)
        self._partial = directory / f".{self.path.name}.partial"
        self._sink = self._partial.open("wb")
        try:
            self._writer = pq.ParquetWriter(self._sink, schema, **writer_options(schema))
        except BaseException:
            self._sink.close()
            self._partial.unlink(missing_ok=True)
            raise
        self.rows = 0

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        self._writer.write(data)
        self.rows += data.num_rows

    @property
    def bytes(self) -> int:
        """Bytes written so far (a writer rolls to a new file past a size)."""
        return self._sink.tell()

    def close(self) -> Path:
        self._writer.close()
        self._sink.flush()
        os.fsync(self._sink.fileno())
        self._sink.close()
        os.replace(self._partial, self.path)
        _fsync_directory(self.path.parent)
        return self.path

    def abort(self) -> None:
        self._writer.close()
        self._sink.close()
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def writer_options(schema: pa.Schema) -> dict[str, Any]:
    """Dictionary pages for the strings that repeat (an id that never repeats pays for a
    dictionary the writer then drops), min/max statistics only where readers prune by them
    (the time, the model): together half the writer's CPU (docs/BENCHMARKS.md, "The
    impression log")."""
    leaves = _leaves(schema)
    return {"use_dictionary": [path for path, kind in leaves if kind == pa.string()
                               and path != IMPRESSION_ID],
            "write_statistics": [path for path, _ in leaves if path in STATISTICS]}


def _leaves(fields: Iterable[pa.Field], prefix: str = "") -> list[tuple[str, pa.DataType]]:
    """Each Parquet column's path and Arrow type (a list's values are `<name>.list.element`)."""
    found: list[tuple[str, pa.DataType]] = []
    for field in fields:
        path, kind = prefix + field.name, field.type
        if pa.types.is_struct(kind):
            found += _leaves(list(kind), path + ".")
        elif pa.types.is_list(kind):
            found.append((path + ".list.element", kind.value_type))
        else:
            found.append((path, kind))
    return found


def write_part(root: Path, table: pa.Table, worker: str, seq: int) -> list[Path]:
    """Write a table of impressions as one file per UTC hour its rows fall in, atomically."""
    paths = []
    for hour, rows in by_hour(table):
        with PartFile(root, hour, worker, seq, table.schema) as part:
            part.write(rows)
        paths.append(part.path)
    return paths


def by_hour(table: pa.Table) -> Iterator[tuple[datetime, pa.Table]]:
    """The table's rows by the UTC hour of their `time`, earliest first."""
    first, last = (_hour(value.as_py()) for value in pc.min_max(table.column(TIME)).values())
    if first == last:  # the common case, checked without flooring every row's time
        yield first, table
        return
    hours = pc.floor_temporal(table.column(TIME), unit="hour")
    for start in pc.unique(hours).sort():
        yield start.as_py(), table.filter(pc.equal(hours, start))


def _hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (the file's bytes were synced before it)."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
