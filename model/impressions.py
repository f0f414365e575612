"""The impression log: what the service scored, as Parquet (torch-free; docs/IMPRESSIONS.md).

One row per scored instance; files under `DIR/date=YYYY-MM-DD/hour=HH/part-<worker>-<seq>.parquet`
(UTC hour of the rows' `time`), each written under a hidden name and renamed when complete,
so a reader that skips names starting with `.` or `_` (as pyarrow.dataset does) never sees
half a file. The service writes it; `afm-join` reads it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
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
        pa.field(PREDICTION, pa.float64()),  # null for regression models
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
    row: dict[str, Any] = {}
    for spec in fields:
        value = instance.get(spec.name)
        if value is None or value == "" and spec.missing == "learned":
            row[spec.name] = None
        elif spec.kind == FieldKind.CATEGORICAL:
            row[spec.name] = str(value)
        elif spec.kind == FieldKind.MULTI:
            row[spec.name] = [str(v) for v in (value if isinstance(value, list) else [value])]
        else:
            row[spec.name] = float(value)
    return row


def impression_id(request_id: str, position: int) -> str:
    return f"{request_id}-{position}"


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
            self._writer = pq.ParquetWriter(self._sink, schema)
        except BaseException:
            self._sink.close()
            self._partial.unlink(missing_ok=True)
            raise
        self.rows = 0

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        self._writer.write(data)
        self.rows += data.num_rows

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


def write_part(root: Path, table: pa.Table, worker: str, seq: int) -> list[Path]:
    """Write a table of impressions as one file per UTC hour its rows fall in, atomically."""
    paths = []
    for hour, rows in _by_hour(table):
        with PartFile(root, hour, worker, seq, table.schema) as part:
            part.write(rows)
        paths.append(part.path)
    return paths


def _by_hour(table: pa.Table) -> Iterator[tuple[datetime, pa.Table]]:
    hours = pc.floor_temporal(table.column(TIME), unit="hour")
    for start in pc.unique(hours).sort():
        yield start.as_py(), table.filter(pc.equal(hours, start))


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (the file's bytes were synced before it)."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
