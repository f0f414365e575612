"""Post-hoc calibration: fit the map from score to probability on labelled rows (numpy).

    fit("platt", scores, labels)     -> Platt(a, b): sigmoid(a * score + b), by Newton's method
    fit("isotonic", scores, labels)  -> Isotonic(x, y): pool-adjacent-violators, its blocks'
                                        (mean score, rate) as knots, pooled to at most
                                        MAX_KNOTS, interpolated linearly between them

Isotonic knots sit at each block's mean score (the "centred" isotonic regression of Oron and
Flournoy, 2017), so the map rises strictly between knots and keeps the model's ranking
within them instead of flattening whole blocks into ties. The knots are bounded so that the
graph's (B, K) interpolation stays cheap next to the model.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from model.calibration import Calibration, Isotonic, NoCalibration, Platt, sigmoid

CalibrationKind = Literal["none", "platt", "isotonic"]
MAX_KNOTS = 200
PROBABILITY_FLOOR = 1e-6
"""Isotonic probabilities are kept this far from 0 and 1 (a block with no click is not a
promise of none)."""
NEWTON_STEPS = 50


def fit(kind: CalibrationKind, scores: np.ndarray, labels: np.ndarray) -> Calibration:
    if kind == "platt":
        return fit_platt(scores, labels)
    if kind == "isotonic":
        return fit_isotonic(scores, labels)
    return NoCalibration()


def fit_platt(scores: np.ndarray, labels: np.ndarray) -> Platt:
    """(a, b) minimising the logloss of sigmoid(a * score + b): Newton steps, halved while
    they do not lower the loss (the loss is convex, so this reaches its minimum)."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels, np.float64)
    theta = np.array([1.0, 0.0])
    loss = _platt_loss(theta, s, y)
    for _ in range(NEWTON_STEPS):
        p = sigmoid(theta[0] * s + theta[1])
        residual, curvature = p - y, np.maximum(p * (1 - p), 1e-12)
        gradient = np.array([residual @ s, residual.sum()])
        hessian = np.array([[curvature @ (s * s), curvature @ s], [curvature @ s, curvature.sum()]])
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        for _ in range(30):
            candidate = theta - step
            candidate_loss = _platt_loss(candidate, s, y)
            if candidate_loss <= loss:
                break
            step = step / 2
        else:
            break  # no step lowers the loss: at the minimum up to rounding
        converged = loss - candidate_loss < 1e-12 * max(loss, 1.0)
        theta, loss = candidate, candidate_loss
        if converged:
            break
    return Platt(a=float(theta[0]), b=float(theta[1]))


def _platt_loss(theta: np.ndarray, s: np.ndarray, y: np.ndarray) -> float:
    z = theta[0] * s + theta[1]
    return float(np.sum(np.logaddexp(0.0, z) - y * z))


def pool_adjacent_violators(values: np.ndarray, weights: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
    """The isotonic (non-decreasing) least-squares fit of `values` in their order, as blocks:
    -> (block sizes in rows, block means)."""
    means: list[float] = []
    mass: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        means.append(value)
        mass.append(weight)
        sizes.append(1)
        while len(means) > 1 and means[-2] >= means[-1]:
            total = mass[-2] + mass[-1]
            means[-2] = (means[-2] * mass[-2] + means[-1] * mass[-1]) / total
            mass[-2], sizes[-2] = total, sizes[-2] + sizes[-1]
            del means[-1], mass[-1], sizes[-1]
    return np.array(sizes, np.int64), np.array(means)


def fit_isotonic(scores: np.ndarray, labels: np.ndarray, max_knots: int = MAX_KNOTS) -> Isotonic:
    s, y = np.asarray(scores, np.float64), np.asarray(labels, np.float64)
    distinct, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    rates = np.bincount(inverse, weights=y) / counts  # tied scores pooled first
    sizes, means = pool_adjacent_violators(rates, counts.astype(np.float64))
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    rows = np.add.reduceat(counts, starts)  # rows in each block
    centres = np.add.reduceat(distinct * counts, starts) / rows
    # Pool consecutive blocks into at most max_knots groups of about equal rows: averages of
    # consecutive non-decreasing rates stay non-decreasing.
    group = (np.r_[0, np.cumsum(rows)[:-1]] * max_knots) // rows.sum()
    groups = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    grouped_rows = np.add.reduceat(rows, groups)
    x = np.add.reduceat(centres * rows, groups) / grouped_rows
    p = np.add.reduceat(means * rows, groups) / grouped_rows
    if len(x) == 1:  # one rate for every score: a flat map
        x = np.array([x[0] - 1.0, x[0] + 1.0])
        p = np.repeat(p, 2)
    p = np.clip(p, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return Isotonic(x=x.tolist(), y=p.tolist())
