"""Negative downsampling: which negative rows a shard set keeps, and the logit shift that
undoes it.

A negative row is kept iff a hash of (seed, its ordinal in the split) falls under the keep
rate w; positives are always kept. The choice is made once, when the shards are written, so
every epoch and every rank sees the same rows. A model trained on the kept rows predicts q;
on the full traffic the probability is p = q / (q + (1 - q) / w), i.e. its logit plus ln w.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from training.config import DataConfig

_UNIT = 1.0 / float(1 << 53)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit mix of uint64 keys (splitmix64's finaliser): independent-looking outputs."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def keep_mask(labels: np.ndarray, first_ordinal: int, rate: float, seed: int) -> np.ndarray:
    """(n,) bool: which of n consecutive rows, the first at `first_ordinal` in their split,
    are kept: every positive (label > 0.5), and a negative iff its hash falls under `rate`."""
    if rate >= 1.0:
        return np.ones(len(labels), bool)
    salt = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], np.uint64))
    ordinals = np.arange(first_ordinal, first_ordinal + len(labels), dtype=np.uint64)
    uniform = (splitmix64(ordinals ^ salt) >> np.uint64(11)).astype(np.float64) * _UNIT  # [0, 1)
    return (labels > 0.5) | (uniform < rate)


def logit_shift(trained_at: float, evaluated_at: float = 1.0) -> float:
    """What to add to the logit of a model trained on negatives kept at rate `trained_at` so
    that it predicts rows whose negatives are kept at `evaluated_at` (1: the real traffic)."""
    return math.log(trained_at / evaluated_at)


@dataclass(frozen=True)
class KeepRates:
    """The share of negative rows each split keeps, and the run's seed that chooses them:
    what every format that writes shards is given."""

    train: float = 1.0
    validation: float = 1.0
    seed: int = 0

    @classmethod
    def of(cls, data: DataConfig, seed: int) -> KeepRates:
        return cls(data.negative_keep_rate, data.validation_negative_keep_rate, seed)


EVERY_ROW = KeepRates()
"""No downsampling."""


def cache_key(rate: float, seed: int, prefix: str = "") -> dict[str, Any]:
    """What downsampling adds to a shard set's cache key: nothing at the full rate (so caches
    written before downsampling existed stay valid), else the rate and the seed."""
    return {} if rate >= 1.0 else {f"{prefix}negative_keep_rate": rate, f"{prefix}downsampling_seed": seed}
