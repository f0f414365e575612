"""The monotone map from a binary model's score (its logit, corrected for any negative
downsampling) to the probability it serves, as the manifest records it.

The exported graph applies the map itself (its `prediction` output); `probability` here is
the same map in numpy, for bundles whose graph predates that output and for tests.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) in float64, without overflow for large |x|."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(logits, np.float64)))


class _Map(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NoCalibration(_Map):
    """probability = sigmoid(score)."""

    kind: Literal["none"] = "none"

    def probability(self, score: np.ndarray) -> np.ndarray:
        return sigmoid(score)


class Platt(_Map):
    """probability = sigmoid(a * score + b) (Platt scaling)."""

    kind: Literal["platt"] = "platt"
    a: float
    b: float

    def probability(self, score: np.ndarray) -> np.ndarray:
        return sigmoid(self.a * np.asarray(score, np.float64) + self.b)


class Isotonic(_Map):
    """probability = the piecewise-linear interpolation of the knots (x, y): increasing
    scores x, non-decreasing probabilities y; constant beyond the first and last knot."""

    kind: Literal["isotonic"] = "isotonic"
    x: list[float] = Field(min_length=2)
    y: list[float] = Field(min_length=2)

    @model_validator(mode="after")
    def _monotone(self) -> Isotonic:
        x, y = np.array(self.x), np.array(self.y)
        if len(x) != len(y):
            raise ValueError(f"x and y must have one value per knot, got {len(x)} and {len(y)}")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
            raise ValueError("knots must have increasing x and non-decreasing y")
        if y[0] < 0 or y[-1] > 1:
            raise ValueError(f"y must be probabilities in [0, 1], got [{y[0]}, {y[-1]}]")
        return self

    def probability(self, score: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(score, np.float64), self.x, self.y)


Calibration = Annotated[NoCalibration | Platt | Isotonic, Field(discriminator="kind")]
