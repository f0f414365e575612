"""The join itself, in DuckDB: out of core, within a memory limit, spilling to a directory.

1. Every event against the whole log's (impression_id, time, model) columns: its outcome
   (matched, early, late, unmatched, other model), one row per event. An id the log holds
   more than once (a client that reuses its X-Request-ID, a retried request) credits the
   latest of its impressions whose window holds the event, else the latest.
2. The labels: per impression (id and time) with events in its window, the largest label.
3. The day: the chosen model's impressions left-joined with the labels (none: 0), the
   features struct flattened into columns, written as Parquet parts, with what the live
   model and a shadow model served; then the two compared on the rows both scored
   (`training.join.compare`).

Events are few next to impressions (a few percent), so steps 1 and 2 build hash tables of
events and stream the impressions past them; step 3 streams the impressions to the output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb

from training.join.compare import ShadowComparison, compare

OUTCOMES = """
CREATE TEMP TABLE outcomes AS
WITH candidates AS (
  SELECT e.event, e.impression_id, e.label, i.time AS shown,
    CASE WHEN i.impression_id IS NULL THEN 'unmatched'
         WHEN NOT (i.model_name = $name AND list_contains($versions, i.model_version)) THEN 'other_model'
         WHEN epoch_us(e.time) < epoch_us(i.time) THEN 'early'
         WHEN epoch_us(e.time) - epoch_us(i.time) > $window_us THEN 'late'
         ELSE 'matched' END AS outcome
  FROM (SELECT row_number() OVER () AS event, * FROM read_parquet($events)) e
  LEFT JOIN (SELECT impression_id, time, model_name, model_version
             FROM read_parquet($log, union_by_name = true)) i
    ON e.impression_id = i.impression_id)
SELECT impression_id, label, shown, outcome, count(*) OVER (PARTITION BY event) AS copies
FROM candidates
QUALIFY row_number() OVER (PARTITION BY event ORDER BY outcome = 'matched' DESC, shown DESC) = 1
"""
LABELS = """
CREATE TEMP TABLE labels AS
SELECT impression_id, shown, max(label) AS label, count(*) AS events
FROM outcomes WHERE outcome = 'matched' GROUP BY impression_id, shown
"""
DAY = """
COPY (
  SELECT coalesce(l.label, 0)::FLOAT AS label, unnest(i.features),
         i.impression_id, i.time, i.model_version, i.prediction,
         i.shadow_model_version, i.shadow_prediction
  FROM read_parquet($chosen, union_by_name = true) i
  LEFT JOIN labels l ON i.impression_id = l.impression_id AND i.time = l.shown
  WHERE i.model_name = $name AND list_contains($versions, i.model_version)
) TO '{out}' (FORMAT parquet, COMPRESSION zstd, PER_THREAD_OUTPUT true, FILENAME_PATTERN 'part-{{i}}')
"""
OUTCOME_NAMES = ("matched", "unmatched", "late", "early", "other_model")


MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    memory: str = "1GB"
    """DuckDB's memory_limit, e.g. 512MB or 4GiB; past it joins and aggregates spill to disk."""
    threads: int = 2

    def __post_init__(self) -> None:
        if not MEMORY.match(self.memory):
            raise ValueError(f"a memory limit is a size such as 512MB or 4GB, got {self.memory!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")


@dataclass
class Outcome:
    """What the join found: events by outcome, the labels it gave, the rows it wrote."""

    events: dict[str, int]
    repeated: int
    """Events whose impression id the log holds more than once."""
    positives: int
    labelled: int
    duplicates: int
    rows: int
    shadow: ShadowComparison | None = None
    """The live model against a shadow model, where one scored some of the day's rows."""


def join(log: list[Path], chosen: list[Path], events: list[Path], model: tuple[str, list[str]],
         window: timedelta, out: Path, limits: Limits, spill: Path) -> Outcome:
    """Join `events` (Parquet of training.join.events.EVENTS) to the impressions of `model`
    (name, versions) in the files `chosen` and write the day to `out`; `log` is every file,
    for the events' outcomes; `spill` takes what does not fit in the memory limit."""
    with duckdb.connect(config={"memory_limit": limits.memory, "threads": limits.threads,
                                "temp_directory": str(spill),
                                "preserve_insertion_order": False}) as db:
        name, versions = model
        params = {"name": name, "versions": versions}
        db.execute(OUTCOMES, {**params, "events": [str(p) for p in events], "log": [str(p) for p in log],
                              "window_us": window // timedelta(microseconds=1)})
        counts = dict.fromkeys(OUTCOME_NAMES, 0)
        counts.update(db.execute("SELECT outcome, count(*) FROM outcomes GROUP BY outcome").fetchall())
        repeated = (db.execute("SELECT count(*) FROM outcomes WHERE copies > 1").fetchone() or (0,))[0]
        db.execute(LABELS)
        labelled, positives, matched = db.execute(
            "SELECT count(*), count(*) FILTER (WHERE label > 0), coalesce(sum(events), 0) FROM labels"
        ).fetchone() or (0, 0, 0)
        # Columns are written nullable whatever the data: with statistics propagation on, a
        # column without nulls today would be REQUIRED in today's files and not tomorrow's.
        db.execute("SET disabled_optimizers = 'statistics_propagation'")
        written = db.execute(DAY.format(out=_quoted(out)), {**params, "chosen": [str(p) for p in chosen]})
        rows = (written.fetchone() or (0,))[0]
        shadow = compare(db, str(out / "*.parquet")) if rows else None
    return Outcome(counts, int(repeated), int(positives), int(labelled), int(matched) - int(labelled),
                   int(rows), shadow)


def _quoted(path: Path) -> str:
    """A path inside a SQL string literal (COPY's target cannot be a parameter)."""
    return str(path).replace("'", "''")
