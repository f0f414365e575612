"""Pass 1: how often each categorical value occurs, and the integer columns' statistics.

Counting state is one Arrow table of (value, count) per categorical column: each block's
value counts wait in a list and are merged into the table by a hash group-by once they
hold half as many values as it (at least MERGE_MIN), so the work stays near-linear and
memory stays near the number of distinct values (~16 bytes each for 8-character values).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from training.criteo.reader import CATEGORICALS, INTEGERS

MERGE_MIN = 1 << 18
STATS_FILE = "integers.json"


@dataclass
class Moments:
    """Count, mean, sum of squared deviations (merged by Chan's formula), min and max."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        n, mean = len(values), float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))

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
        self.pending.append(pa.table({"values": counted.field("values"),
                                      "counts": counted.field("counts").cast(pa.int64())}))
        self.pending_rows += len(counted)
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
    """What pass 1 learns from a training file."""

    values: dict[str, pa.Table]  # C1..C26 -> (values, counts)
    integers: dict[str, Moments]  # I1..I13
    rows: int = 0

    @classmethod
    def start(cls) -> Counts:
        return cls({}, {name: Moments() for name in INTEGERS})

    def save(self, directory: Path) -> None:
        for name, table in self.values.items():
            feather.write_feather(table, directory / f"{name}.feather", compression="uncompressed")
        stats = {"rows": self.rows, "integers": {k: asdict(v) for k, v in self.integers.items()}}
        (directory / STATS_FILE).write_text(json.dumps(stats, indent=1))

    @classmethod
    def load(cls, directory: Path) -> Counts:
        stats = json.loads((directory / STATS_FILE).read_text())
        values = {name: feather.read_table(directory / f"{name}.feather", memory_map=True)
                  for name in CATEGORICALS}
        integers = {k: Moments(**v) for k, v in stats["integers"].items()}
        return cls(values, integers, stats["rows"])


def count(batches: object) -> Counts:
    """Count every block of an iterable of Arrow record batches."""
    counting = {name: ValueCounts() for name in CATEGORICALS}
    counts = Counts.start()
    for batch in batches:  # type: ignore[attr-defined]
        for name in CATEGORICALS:
            counting[name].add(batch.column(name))
        for name in INTEGERS:
            column = batch.column(name)
            counts.integers[name].add(column.drop_null().to_numpy())
        counts.rows += batch.num_rows
    counts.values = {name: c.merge() for name, c in counting.items()}
    return counts
