"""The live model against its shadow on the clicks that came back: the training day's rows
that a shadow model also scored, each model's AUC, logloss, NE and calibration on them.

Computed in DuckDB over the written day, so it is bounded in memory like the join: AUC by
the rank-sum statistic over the distinct predictions (a positive above a negative counts 1,
a tie 1/2), the others as sums. The definitions are `training.metrics`' (probabilities
clipped to EPSILON before their log; tests hold the two equal).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import duckdb

from training.metrics import EPSILON

LIVE, SHADOW = "prediction", "shadow_prediction"

ROWS = """
SELECT count(*), count(*) FILTER (WHERE label NOT IN (0, 1)),
       list(DISTINCT shadow_model_version ORDER BY shadow_model_version)
FROM read_parquet($day) WHERE {shadow} IS NOT NULL AND {live} IS NOT NULL
"""
METRICS = """
WITH scored AS (
  SELECT label, {column} AS p, greatest(least({column}, 1 - {epsilon}), {epsilon}) AS clipped
  FROM read_parquet($day) WHERE {shadow} IS NOT NULL AND {live} IS NOT NULL),
ties AS (
  SELECT p, count(*) FILTER (WHERE label = 1) AS positives, count(*) FILTER (WHERE label = 0) AS negatives
  FROM scored GROUP BY p),
below AS (
  SELECT positives, negatives,
         coalesce(sum(negatives) OVER (ORDER BY p ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
           AS negatives_below
  FROM ties)
SELECT (SELECT sum(positives * negatives_below + 0.5 * positives * negatives) FROM below),
       avg(-(label * ln(clipped) + (1 - label) * ln(1 - clipped))),
       avg(p), avg(label), sum(label), count(*)
FROM scored
"""


@dataclass(frozen=True)
class Metrics:
    auc: float
    logloss: float
    ne: float
    calibration: float


@dataclass(frozen=True)
class ShadowComparison:
    rows: int
    """Rows of the day that the shadow model scored too."""
    versions: list[str]
    """The shadow model versions that scored them."""
    live: Metrics | None
    shadow: Metrics | None
    """None where the rows' labels are not all 0 or 1, or hold one class only."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(db: duckdb.DuckDBPyConnection, day: str) -> ShadowComparison | None:
    """The comparison on the day's Parquet files (`day`, a glob), or None if no row of it
    holds a shadow score."""
    names = {"live": LIVE, "shadow": SHADOW}
    rows, other_labels, versions = db.execute(ROWS.format(**names), {"day": day}).fetchone() or (0, 0, [])
    if not rows:
        return None
    if other_labels:
        return ShadowComparison(int(rows), list(versions), None, None)
    live, shadow = (_metrics(db, day, column) for column in (LIVE, SHADOW))
    return ShadowComparison(int(rows), list(versions), live, shadow)


def _metrics(db: duckdb.DuckDBPyConnection, day: str, column: str) -> Metrics | None:
    query = METRICS.format(column=column, epsilon=repr(EPSILON), live=LIVE, shadow=SHADOW)
    found = db.execute(query, {"day": day}).fetchone()
    assert found is not None  # an aggregate answers one row
    above, loss, mean_p, rate, positives, rows = found
    negatives = rows - positives
    if not positives or not negatives:
        return None
    entropy = -(rate * math.log(rate) + (1 - rate) * math.log1p(-rate))
    return Metrics(auc=float(above) / (positives * negatives), logloss=float(loss),
                   ne=float(loss) / entropy, calibration=float(mean_p) / float(rate))

