"""Pass 1: how often each categorical value occurs, and the numeric columns' statistics.

Counting state is one Arrow table of (value, count) per categorical or multi-valued field:
each block's value counts wait in a list and are merged into the table by a hash group-by
once they hold half as many values as it (at least MERGE_MIN), so the work stays
near-linear and memory stays near the number of distinct values (~16 bytes each for
8-character values). A multi-valued field counts every value of its lists, and the most
values a row holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from model.features import FieldKind

MERGE_MIN = 1 << 18
STATS_FILE = "stats.json"


@dataclass
class Moments:
    """Count, mean, sum of squared deviations (merged by Chan's formula), min and max."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, values: np.ndarray) -> None:
        if len(values):
            mean = float(values.mean())
            self.combine(Moments(len(values), mean, float(((values - mean) ** 2).sum()),
                                 float(values.min()), float(values.max())))

    def combine(self, other: Moments) -> None:
        """Fold in the moments of more values (Chan's formula: the order of folding decides
        the last bits, so the same blocks folded in the same order give the same floats)."""
        if not other.count:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.mean += delta * other.count / total
        self.count = total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else 0.0


@dataclass
class ValueCounts:
    """(values, counts) of one categorical column, merged lazily."""

    merged: pa.Table = field(default_factory=lambda: _table([], []))
    pending: list[pa.Table] = field(default_factory=list)
    pending_rows: int = 0

    def add(self, column: pa.Array) -> None:
        counted = pc.value_counts(column.drop_null())
        self.extend(pa.table({"values": counted.field("values"),
                              "counts": counted.field("counts").cast(pa.int64())}))

    def extend(self, counted: pa.Table) -> None:
        """Add a (values, counts) table, e.g. another piece's."""
        self.pending.append(counted)
        self.pending_rows += counted.num_rows
        if self.pending_rows >= max(MERGE_MIN, self.merged.num_rows // 2):
            self.merge()

    def merge(self) -> pa.Table:
        if self.pending:
            both = pa.concat_tables([self.merged, *self.pending])
            summed = both.group_by("values").aggregate([("counts", "sum")])
            self.merged = summed.rename_columns(["values", "counts"]).combine_chunks()
            self.pending, self.pending_rows = [], 0
        return self.merged


def _table(values: list[str], counts: list[int]) -> pa.Table:
    return pa.table({"values": pa.array(values, pa.string()), "counts": pa.array(counts, pa.int64())})


@dataclass
class Counts:
    """What pass 1 learns from the training rows."""

    values: dict[str, pa.Table]  # categorical and multi-valued fields -> (values, counts)
    numbers: dict[str, Moments]  # numeric and bucketised fields
    longest: dict[str, int] = field(default_factory=dict)  # multi-valued fields: most values in a row
    rows: int = 0

    def save(self, directory: Path) -> None:
        for name, table in self.values.items():
            _save_table(table, directory, name)
        self.save_stats(directory)

    def save_stats(self, directory: Path) -> None:
        stats = {"rows": self.rows, "values": list(self.values), "longest": self.longest,
                 "numbers": {k: asdict(v) for k, v in self.numbers.items()}}
        (directory / STATS_FILE).write_text(json.dumps(stats, indent=1))

    @classmethod
    def load(cls, directory: Path) -> Counts:
        stats = json.loads((directory / STATS_FILE).read_text())
        values = {name: feather.read_table(directory / f"{name}.feather", memory_map=True)
                  for name in stats["values"]}
        numbers = {k: Moments(**v) for k, v in stats["numbers"].items()}
        return cls(values, numbers, stats["longest"], stats["rows"])


def _save_table(table: pa.Table, directory: Path, name: str) -> None:
    feather.write_feather(table, directory / f"{name}.feather", compression="uncompressed")


def merge_values(parts: list[Path], name: str, out: Path) -> None:
    """Field `name`'s value counts summed over pass 1's pieces (`parts`: their saved Counts),
    written into `out`; the pieces' tables are memory-mapped until they are merged."""
    values = ValueCounts()
    for part in parts:
        values.extend(feather.read_table(part / f"{name}.feather", memory_map=True))
    _save_table(values.merge(), out, name)


def merge_stats(parts: list[Path], out: Path) -> None:
    """Rows, multi-valued widths and numeric moments of the pieces, folded in piece order
    (the same pieces give the same floats whoever counted them), written into `out`."""
    merged: Counts | None = None
    for part in parts:
        stats = json.loads((part / STATS_FILE).read_text())
        piece = Counts(dict.fromkeys(stats["values"], _table([], [])),
                       {k: Moments(**v) for k, v in stats["numbers"].items()}, stats["longest"],
                       stats["rows"])
        if merged is None:
            merged = piece
            continue
        merged.rows += piece.rows
        for name, moments in piece.numbers.items():
            merged.numbers[name].combine(moments)
        for name, longest in piece.longest.items():
            merged.longest[name] = max(merged.longest.get(name, 0), longest)
    if merged is not None:
        merged.save_stats(out)


def count(batches: Iterable[pa.RecordBatch], kinds: Mapping[str, FieldKind]) -> Counts:
    """Count every block of normalised record batches (`training.stream`): values of the
    categorical and multi-valued fields, moments of the numeric and bucketised ones."""
    counting = {name: ValueCounts() for name, kind in kinds.items()
                if kind in (FieldKind.CATEGORICAL, FieldKind.MULTI)}
    counts = Counts({}, {name: Moments() for name in kinds if name not in counting})
    for batch in batches:
        for name, values in counting.items():
            column = batch.column(name)
            if kinds[name] == FieldKind.MULTI:
                longest = pc.max(pc.list_value_length(column)).as_py() or 0
                counts.longest[name] = max(counts.longest.get(name, 0), longest)
                column = pc.list_flatten(column)
            values.add(column)
        for name, moments in counts.numbers.items():
            moments.add(batch.column(name).drop_null().to_numpy())
        counts.rows += batch.num_rows
    counts.values = {name: c.merge() for name, c in counting.items()}
    return counts
