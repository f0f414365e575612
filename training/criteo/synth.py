"""Synthetic click logs in the Criteo format, with a click model whose truth is known.

    python -m training.criteo.synth --rows 1000000 --out /work/bench-data/train.tsv.gz
    python -m training.criteo.synth --rows 1000000 --parquet /work/bench-data/logs --days 7

Rows are `label, I1..I13, C1..C26`, tab-separated, no header, an empty column for a missing
value, gzip-compressed when the name ends in `.gz`: what `[data] format = "criteo"` reads.
With --parquet the same rows are Parquet day partitions (`logs/day=2026-12-01/
part-00000.parquet`, ...), typed as Spark writes them: what `format = "parquet"` reads.

The world (value effects, planted interactions) is fixed by `world`; the rows by `seed`, so
a train and a validation file share one world and differ in rows. `drift` makes a later
day's world: the same values and rows, half the planted pairs gone and the others stronger
(`training.criteo.traffic` turns rows into the service's instances and clicks). The click
model is

    logit = bias + sum_c lin_c(value_c) + sum_i g_i(x_i) + sum_(a,b planted) <u_a(value_a), v_b(value_b)>

- categorical values follow a power law over Criteo's per-column cardinalities (times
  `scale`); a value's linear effect shrinks with its rank, so the tail matters little;
- integers are heavy-tailed (log-normal) with Criteo-like missing rates; their effect is a
  smooth non-monotone function of ln(1 + x), and a missing integer has its own effect;
- a few field pairs interact through low-rank tables and every other pair carries nothing,
  which an AFM can learn to attend to and an FM cannot weigh.

Effects are hashes of (world, column, rank), never stored tables, so memory is bounded by
the chunk whatever the cardinalities. Beside FILE the generator writes FILE.probs.npy (the
true click probability of every row, float32) and FILE.truth.json (rows, positives, and the
Bayes-optimal AUC and logloss of those probabilities on the file's labels); with --parquet,
DIR.probs.npy (day by day, in file order) and DIR.truth.json beside the directory.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from training.downsample import splitmix64

log = logging.getLogger(__name__)

# Distinct values per column of the full Kaggle log (shared/data/README.md).
CARDINALITIES = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593,
                 3194, 27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)
# Approximate shares of empty columns in Criteo's log.
INT_MISSING = (0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.001, 0.04, 0.45, 0.04, 0.77, 0.22)
CAT_MISSING = (0, 0, 0.03, 0.03, 0, 0.12, 0, 0, 0, 0, 0, 0.03, 0, 0, 0, 0.03, 0, 0,
               0.44, 0.44, 0, 0.76, 0, 0.03, 0.44, 0.44)
# Median and log-spread of each integer column (x = exp(ln(1 + median) + spread * z) - 1).
INT_MEDIAN = (1, 3, 7, 6, 3000, 40, 5, 12, 60, 0.5, 2, 0.2, 6)
INT_SPREAD = (1.4, 1.6, 1.5, 1.0, 1.8, 1.6, 1.4, 1.0, 1.3, 0.6, 0.9, 1.2, 1.1)
# Planted interactions: pairs of categorical columns (0-based: C1 = 0). The world plants the
# first `World.planted`; from the fifth on they share columns with earlier pairs, each pair
# with factors of its own, so that one vector per value cannot serve every pair at once.
PLANTED = ((0, 1), (4, 7), (5, 13), (10, 12), (0, 4), (1, 5), (7, 13), (10, 17), (12, 18),
           (0, 24), (4, 21), (5, 22), (1, 17), (7, 18), (13, 24), (21, 22))
# Byte -> its two lowercase hex digits, as a little-endian uint16 (so .tobytes() spells them).
HEX_PAIRS = np.array([ord(f"{b:02x}"[0]) | ord(f"{b:02x}"[1]) << 8 for b in range(256)], np.uint16)
MASK32 = np.uint64(0xFFFFFFFF)
# The Parquet form of a row, as Spark writes a click table: an integer label, nullable 64-bit
# integers, strings.
SPARK_SCHEMA = pa.schema([("label", pa.int32()), *((f"I{i}", pa.int64()) for i in range(1, 14)),
                          *((f"C{i}", pa.string()) for i in range(1, 27))])
FIRST_DAY = date(2026, 12, 1)


@dataclass(frozen=True)
class World:
    """The click model: everything but the rows."""

    scale: float = 1.0
    """Cardinalities are Criteo's times this (at least 2)."""
    world: int = 0
    """Seed of the effects and interactions."""
    zipf: float = 1.1
    """Power-law exponent of value frequencies (rank r has weight ~ (r + 1)^-zipf)."""
    linear: float = 0.25
    """Standard deviation of the most frequent values' linear effects."""
    interaction: float = 0.6
    """Standard deviation of each planted pair's interaction term."""
    rank: int = 2
    """Rank of the planted interaction tables."""
    planted: int = 4
    """How many pairs of PLANTED interact (1 to 16)."""
    integer: float = 0.2
    """Amplitude of each integer column's effect."""
    ctr: float = 0.25
    """Target share of clicks (the bias is fitted to it on a pilot sample)."""
    drift: int = 0
    """A drifted click model, e.g. a later day's (0: none): of the planted pairs, half (chosen
    by this seed) are gone and the others `drift_gain` times as strong. The rows' values are
    those of the undrifted world; only the clicks change."""
    drift_gain: float = 2.0
    """How much stronger the pairs that a drift keeps become."""

    def cardinalities(self) -> np.ndarray:
        return np.maximum(2, np.round(np.array(CARDINALITIES) * self.scale)).astype(np.int64)

    def pair_weights(self) -> np.ndarray:
        """(planted,) each planted pair's weight: 1 without drift; 0 (gone) for half the
        pairs and drift_gain for the others with it."""
        weights = np.ones(self.planted)
        if self.drift:
            order = np.random.default_rng([self.world, self.drift]).permutation(self.planted)
            weights[order[: self.planted // 2]] = 0.0
            weights[order[self.planted // 2 :]] = self.drift_gain
        return weights


def _effect(world: int, column: int, salt: int, ranks: np.ndarray) -> np.ndarray:
    """A uniform effect with mean 0 and variance 1 per (world, column, salt, rank): one hash,
    about 3x cheaper than a normal by Box-Muller."""
    key = ranks.astype(np.uint64) * np.uint64(1 << 12) + np.uint64((column << 6) + salt)
    bits = splitmix64(key ^ splitmix64(np.array([world], dtype=np.uint64)))
    return ((bits >> np.uint64(11)).astype(np.float64) * (2.0 / float(1 << 53)) - 1.0) * np.sqrt(3.0)


def _power_law(rng: np.random.Generator, n: int, cardinality: int, exponent: float) -> np.ndarray:
    """Ranks in [0, cardinality) with P(r) ~ (r + 1)^-exponent (continuous inverse CDF)."""
    u = rng.random(n)
    top = float(cardinality + 1) ** (1.0 - exponent)
    x = (1.0 - u * (1.0 - top)) ** (1.0 / (1.0 - exponent))
    return np.minimum(x.astype(np.int64) - 1, cardinality - 1)


def value_ids(column: int, ranks: np.ndarray, world: int) -> np.ndarray:
    """A bijective 32-bit mix of the rank: distinct ranks give distinct 8-hex-digit values."""
    h = (ranks.astype(np.uint64) * np.uint64(0x9E3779B1) + np.uint64(column * 0x632BE5AB + world)) & MASK32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & MASK32
    return h ^ (h >> np.uint64(13))


def hex_strings(ids: np.ndarray, valid: np.ndarray) -> pa.Array:
    """uint32 ids as 8 lowercase hex digits (Criteo's look), built straight into Arrow buffers."""
    digits = HEX_PAIRS[ids.astype(">u4").view(np.uint8)]  # (4n,): two digits per byte
    offsets = np.arange(0, 8 * len(ids) + 1, 8, dtype=np.int32)
    bitmap = np.packbits(valid, bitorder="little")
    return pa.StringArray.from_buffers(len(ids), pa.py_buffer(offsets), pa.py_buffer(digits.tobytes()),
                                       pa.py_buffer(bitmap), null_count=int((~valid).sum()))


@dataclass
class Chunk:
    table: pa.Table  # label, I1..I13, C1..C26
    probs: np.ndarray  # (n,) float64: the true click probability


def _integers(world: World, rng: np.random.Generator, n: int) -> tuple[list[pa.Array], np.ndarray]:
    columns, logit = [], np.zeros(n)
    for i in range(13):
        z = rng.standard_normal(n)
        x = np.floor(np.maximum(np.expm1(np.log1p(INT_MEDIAN[i]) + INT_SPREAD[i] * z), 0.0)).astype(np.int64)
        if i == 1:  # I2 holds a few negative values in Criteo's log
            x[rng.random(n) < 0.05] = -1
        valid = rng.random(n) >= INT_MISSING[i]
        a, b, c = (_effect(world.world, 100 + i, s, np.zeros(1, np.int64))[0] for s in range(3))
        effect = world.integer * np.sin((1.0 + abs(b)) * np.log1p(np.maximum(x, 0)) + 3.0 * c)
        logit += np.where(valid, effect, world.integer * a)
        columns.append(pa.array(x, mask=~valid))
    return columns, logit


def _categoricals(world: World, rng: np.random.Generator, n: int) -> tuple[list[pa.Array], np.ndarray]:
    columns, logit, ranks = [], np.zeros(n), []
    for c, cardinality in enumerate(world.cardinalities().tolist()):
        r = _power_law(rng, n, cardinality, world.zipf)
        valid = rng.random(n) >= CAT_MISSING[c]
        effect = world.linear * _effect(world.world, c, 0, r) / np.sqrt(1.0 + r / 100.0)
        missing_effect = world.linear * _effect(world.world, c, 1, np.zeros(1, np.int64))[0]
        logit += np.where(valid, effect, missing_effect)
        columns.append(hex_strings(value_ids(c, r, world.world), valid))
        ranks.append(np.where(valid, r, -1))
    for p, ((a, b), weight) in enumerate(zip(PLANTED, world.pair_weights(), strict=False)):
        if weight == 0:
            continue
        term = np.zeros(n)
        salt_u, salt_v = (8, 24) if p < 4 else (1000 + 100 * p, 1050 + 100 * p)
        for k in range(world.rank):
            u = _effect(world.world, a, salt_u + k, ranks[a] + 1)  # rank -1 (missing) has factors too
            v = _effect(world.world, b, salt_v + k, ranks[b] + 1)
            term += u * v
        logit += weight * world.interaction * term / np.sqrt(world.rank)
    return columns, logit


def chunk(world: World, bias: float, rng: np.random.Generator, n: int) -> Chunk:
    integers, int_logit = _integers(world, rng, n)
    categoricals, cat_logit = _categoricals(world, rng, n)
    probs = 1.0 / (1.0 + np.exp(-(bias + int_logit + cat_logit)))
    labels = (rng.random(n) < probs).astype(np.int8)
    names = ["label", *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27))]
    return Chunk(pa.table([pa.array(labels), *integers, *categoricals], names=names), probs)


def fit_bias(world: World, rows: int = 50_000) -> float:
    """The bias that gives the target click share on a pilot sample (bisection)."""
    rng = np.random.default_rng([world.world, 2**31 - 1])
    logit = _integers(world, rng, rows)[1] + _categoricals(world, rng, rows)[1]
    lo, hi = -20.0, 20.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-(mid + logit)))) < world.ctr else (lo, mid)
    return (lo + hi) / 2


def chunks(world: World, rows: int, seed: int, chunk_rows: int = 1 << 17) -> Iterator[Chunk]:
    bias = fit_bias(world)
    for k, start in enumerate(range(0, rows, chunk_rows)):
        yield chunk(world, bias, np.random.default_rng([seed, k]), min(chunk_rows, rows - start))


class BayesMetrics:
    """AUC and logloss of the true probabilities, accumulated chunk by chunk in fixed memory:
    AUC over 2^20 probability bins (ties within a bin count half; error far below 1e-4)."""

    BINS = 1 << 20

    def __init__(self) -> None:
        self.pos = np.zeros(self.BINS + 1, np.int64)
        self.neg = np.zeros(self.BINS + 1, np.int64)
        self.loss = 0.0
        self.rows = 0

    def add(self, labels: np.ndarray, probs: np.ndarray) -> None:
        bins = np.floor(probs * self.BINS).astype(np.int64)
        self.pos += np.bincount(bins[labels == 1], minlength=self.BINS + 1)
        self.neg += np.bincount(bins[labels == 0], minlength=self.BINS + 1)
        p = np.clip(probs, 1e-15, 1 - 1e-15)
        self.loss -= float(np.sum(np.where(labels == 1, np.log(p), np.log1p(-p))))
        self.rows += len(labels)

    def result(self) -> dict[str, float]:
        positives, negatives = int(self.pos.sum()), int(self.neg.sum())
        below = np.cumsum(self.neg) - self.neg  # negatives in lower bins
        wins = float(np.sum(self.pos * below) + 0.5 * np.sum(self.pos * self.neg))
        return {"rows": self.rows, "positives": positives,
                "bayes_auc": wins / max(positives * negatives, 1),
                "bayes_logloss": self.loss / max(self.rows, 1)}


def write(path: Path, rows: int, world: World, seed: int, chunk_rows: int = 1 << 17) -> dict:
    """Write `rows` rows to `path` (.gz: gzip), the probabilities and the truth beside it."""
    path = Path(path)
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    # gzip level 1: ~4x faster than Arrow's default level for files ~20% larger.
    opened = gzip.open(path, "wb", compresslevel=1) if path.suffix == ".gz" else path.open("wb")
    with opened as sink:
        writers: list[pacsv.CSVWriter] = []

        def append(table: pa.Table) -> None:
            if not writers:
                writers.append(pacsv.CSVWriter(sink, table.schema, write_options=options))
            writers[0].write_table(table)

        truth = _generate(path, rows, world, seed, chunk_rows, append)
        for writer in writers:
            writer.close()
    return truth


def write_parquet(directory: Path, rows: int, world: World, seed: int, days: int = 1,
                  first_day: date = FIRST_DAY, chunk_rows: int = 1 << 17) -> dict:
    """The same rows as `write` as Parquet day partitions, DIRECTORY/day=YYYY-MM-DD/
    part-00000.parquet (rows split evenly over `days` days, a row group per chunk), typed as
    Spark writes them (`SPARK_SCHEMA`; snappy, dictionary-encoded pages). The probabilities
    and the truth go beside the directory (DIRECTORY.probs.npy, in the rows' order: day by
    day), as beside a text log."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: the partitions of another log would mix in")
    directory.mkdir(parents=True, exist_ok=True)
    writer = _DayWriter(directory, [rows * (d + 1) // days for d in range(days)], first_day)
    try:
        return _generate(directory, rows, world, seed, chunk_rows, writer.append,
                         {"days": days, "first_day": str(first_day)})
    finally:
        writer.close()


class _DayWriter:
    """Appends tables to day partitions, moving to the next day when one holds its rows."""

    def __init__(self, directory: Path, ends: list[int], first_day: date) -> None:
        self.directory, self.ends, self.first_day = directory, ends, first_day
        self.day, self.written = 0, 0
        self.writer: pq.ParquetWriter | None = None

    def append(self, table: pa.Table) -> None:
        table = table.cast(SPARK_SCHEMA)
        while table.num_rows:
            if self.written == self.ends[self.day]:  # the day is full
                self.close()
                self.day += 1
                continue
            if self.writer is None:
                day = self.first_day + timedelta(days=self.day)
                part = self.directory / f"day={day}" / "part-00000.parquet"
                part.parent.mkdir(parents=True, exist_ok=True)
                self.writer = pq.ParquetWriter(part, SPARK_SCHEMA, compression="snappy")
            take = min(table.num_rows, self.ends[self.day] - self.written)
            self.writer.write_table(table.slice(0, take))
            table, self.written = table.slice(take), self.written + take

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _generate(out: Path, rows: int, world: World, seed: int, chunk_rows: int,
              append: Callable[[pa.Table], None], about: dict | None = None) -> dict:
    """Generate the rows chunk by chunk into `append`; OUT.probs.npy and OUT.truth.json beside."""
    probs = np.lib.format.open_memmap(f"{out}.probs.npy", mode="w+", dtype=np.float32, shape=(rows,))
    metrics, start, began = BayesMetrics(), 0, time.perf_counter()
    for part in chunks(world, rows, seed, chunk_rows):
        append(part.table)
        labels = part.table.column("label").to_numpy()
        metrics.add(labels, part.probs)
        probs[start : start + len(labels)] = part.probs
        start += len(labels)
    probs.flush()
    seconds = time.perf_counter() - began
    truth = {**metrics.result(), "seed": seed, "world": asdict(world),
             "seconds": round(seconds, 2), "rows_per_s": round(rows / max(seconds, 1e-9)), **(about or {})}
    Path(f"{out}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.criteo.synth",
                                     description="Write a synthetic Criteo-format click log.")
    parser.add_argument("--rows", type=int, required=True)
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="a .tsv or .tsv.gz file")
    out.add_argument("--parquet", metavar="DIR", help="a directory of Parquet day partitions "
                     "(DIR/day=YYYY-MM-DD/part-00000.parquet)")
    parser.add_argument("--days", type=int, default=1, help="--parquet: day partitions (rows split evenly)")
    parser.add_argument("--first-day", type=date.fromisoformat, default=FIRST_DAY,
                        help=f"--parquet: the first partition's date (default {FIRST_DAY})")
    parser.add_argument("--scale", type=float, default=1.0, help="cardinalities x this")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rows")
    parser.add_argument("--world", type=int, default=0, help="seed of the click model")
    parser.add_argument("--planted", type=int, default=4, choices=range(1, len(PLANTED) + 1),
                        metavar="N", help="interacting column pairs (1-16)")
    parser.add_argument("--ctr", type=float, default=World.ctr,
                        help="target share of clicks (display ads: 0.01-0.04)")
    parser.add_argument("--drift", type=int, default=0, metavar="SEED",
                        help="a drifted click model (e.g. the next day's): half the planted pairs, "
                        "chosen by SEED, gone, the others twice as strong; the same rows (0: none)")
    parser.add_argument("--chunk-rows", type=int, default=1 << 17)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    world = World(scale=args.scale, world=args.world, planted=args.planted, ctr=args.ctr,
                  drift=args.drift)
    if args.days < 1:
        parser.error(f"--days must be at least 1, got {args.days}")
    if args.parquet:
        if Path(args.parquet).is_dir() and any(Path(args.parquet).iterdir()):
            parser.error(f"{args.parquet} is not empty: the partitions of another log would mix in")
        truth = write_parquet(Path(args.parquet), args.rows, world, args.seed, args.days, args.first_day,
                              args.chunk_rows)
    else:
        truth = write(Path(args.out), args.rows, world, args.seed, args.chunk_rows)
    print(json.dumps({k: v for k, v in truth.items() if k != "world"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
