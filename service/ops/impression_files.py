"""One worker's files of the impression log (written by its writer thread alone).

Rows go to the open file of their UTC hour (`model.impressions.PartFile`: a hidden name
until closed, then renamed), buffered into row groups of ROW_GROUP_ROWS. The open file is
closed and the next one started (a roll) after `roll_seconds`, past `roll_bytes`, when rows
of another hour come, and when another model scores (a reload: each file holds one model
version). A closed file is complete and counted (`afm_impression_files_total`, its rows
in `afm_impressions_logged_total`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from model.impressions import PartFile, by_hour
from service.ops.impression_rows import ModelKey
from service.ops.metrics import ImpressionMetrics

# Row groups of this many rows: few enough to buffer, many enough for readers to scan well.
ROW_GROUP_ROWS = 16384


@dataclass
class _Open:
    part: PartFile
    hour: datetime
    key: ModelKey
    opened: float  # time.monotonic()


class LogFiles:
    def __init__(self, root: Path, worker: str, roll_seconds: float, roll_bytes: int,
                 metrics: ImpressionMetrics, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self._root = root
        self._worker = worker
        self._roll_seconds = roll_seconds
        self._roll_bytes = roll_bytes
        self._metrics = metrics
        self._row_group_rows = row_group_rows
        self._open: _Open | None = None
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._seq = 0
        self.accepted = 0  # rows taken in, ever

    def write(self, key: ModelKey, table: pa.Table) -> None:
        for hour, rows in by_hour(table):
            current = self._open
            if current is not None and (current.hour != hour or current.key != key):
                self.roll()
            if self._open is None:
                self._seq += 1
                part = PartFile(self._root, hour, self._worker, self._seq, rows.schema)
                self._open = _Open(part, hour, key, time.monotonic())
            self._buffer.append(rows)
            self._buffered += rows.num_rows
            self.accepted += rows.num_rows
            if self._buffered >= self._row_group_rows:
                self._flush()
            if self._open.part.bytes >= self._roll_bytes:
                self.roll()

    def tick(self) -> None:
        """Roll the open file if it is old enough."""
        if self._open is not None and time.monotonic() - self._open.opened >= self._roll_seconds:
            self.roll()

    def roll(self) -> None:
        """Close the open file (its rows become readable); the next rows start another."""
        if self._open is None:
            return
        self._flush()
        self._open.part.close()
        self._metrics.files.inc()
        self._metrics.logged.inc(self._open.part.rows)
        self._open = None

    def close(self) -> None:
        self.roll()

    def abort(self) -> int:
        """Drop the open file and what is buffered (a write failed); the rows lost."""
        lost = self._buffered + (self._open.part.rows if self._open is not None else 0)
        self._buffer, self._buffered = [], 0
        if self._open is not None:
            part, self._open = self._open.part, None
            try:
                part.abort()
            except Exception:  # the file is gone already, or the disk refuses even that
                pass
        return lost

    def _flush(self) -> None:
        if self._open is not None and self._buffer:
            self._open.part.write(pa.concat_tables(self._buffer))
        self._buffer, self._buffered = [], 0
