"""Post-hoc calibration maps against brute-force references."""

import numpy as np
import pytest

from model.calibration import Isotonic, NoCalibration, Platt, sigmoid
from tests.helpers import REPO
from training.calibrate import fit, fit_isotonic, fit_platt, pool_adjacent_violators
from training.config import load_config


def _isotonic_brute_force(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The min-max formula: fit_i = max_{j <= i} min_{k >= i} weighted mean of values[j..k]."""
    n = len(values)
    fitted = np.empty(n)
    for i in range(n):
        fitted[i] = max(
            min(np.average(values[j : k + 1], weights=weights[j : k + 1]) for k in range(i, n))
            for j in range(i + 1)
        )
    return fitted


@pytest.mark.parametrize("seed", range(5))
def test_pool_adjacent_violators_matches_the_min_max_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=40) + np.linspace(0, 2, 40)
    weights = rng.integers(1, 5, 40).astype(float)
    sizes, means = pool_adjacent_violators(values, weights)
    assert sizes.sum() == 40 and np.all(np.diff(means) > 0)
    np.testing.assert_allclose(np.repeat(means, sizes), _isotonic_brute_force(values, weights))


def _clicks(n: int, a: float, b: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.normal(-2.0, 1.5, n)
    labels = (rng.random(n) < sigmoid(a * scores + b)).astype(np.float32)
    return scores, labels


def _logloss(labels: np.ndarray, p: np.ndarray) -> float:
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def test_platt_finds_the_minimum_of_the_logloss() -> None:
    scores, labels = _clicks(20_000, a=0.7, b=-0.4)
    platt = fit_platt(scores, labels)
    assert (platt.a, platt.b) == pytest.approx((0.7, -0.4), abs=0.08)
    p = platt.probability(scores)
    gradient = [np.sum((p - labels) * scores), np.sum(p - labels)]
    np.testing.assert_allclose(gradient, 0.0, atol=1e-6 * len(labels))
    best = _logloss(labels, p)
    for da in (-0.01, 0.01):  # a grid around the fit finds nothing lower
        for db in (-0.01, 0.01):
            moved = Platt(a=platt.a + da, b=platt.b + db).probability(scores)
            assert _logloss(labels, moved) > best
    assert np.mean(p) == pytest.approx(np.mean(labels), rel=1e-6)  # the b equation


def test_isotonic_is_monotone_bounded_and_calibrated() -> None:
    scores, labels = _clicks(20_000, a=1.3, b=0.5, seed=1)
    isotonic = fit_isotonic(scores, labels, max_knots=50)
    assert 2 <= len(isotonic.x) <= 50
    assert np.all(np.diff(isotonic.x) > 0) and np.all(np.diff(isotonic.y) >= 0)
    p = isotonic.probability(scores)
    assert np.mean(p) == pytest.approx(np.mean(labels), rel=0.02)
    assert _logloss(labels, p) < _logloss(labels, sigmoid(scores))  # scores were miscalibrated


def test_isotonic_knots_are_the_blocks_at_their_mean_score() -> None:
    scores = np.array([0.0, 1.0, 1.0, 2.0, 3.0, 4.0])
    labels = np.array([0.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    isotonic = fit_isotonic(scores, labels, max_knots=100)
    # blocks: {0} rate 0; {1, 1, 2} rate 1/3 at mean score 4/3; {3, 4} rate 1 at 3.5
    np.testing.assert_allclose(isotonic.x, [0.0, 4 / 3, 3.5])
    np.testing.assert_allclose(isotonic.y, [1e-6, 1 / 3, 1 - 1e-6])
    assert isotonic.probability(np.array([-5.0, 10.0])).tolist() == [1e-6, 1 - 1e-6]


def test_a_flat_isotonic_map_still_has_two_knots() -> None:
    isotonic = fit_isotonic(np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 0.0]))
    assert len(isotonic.x) == 2 and isotonic.y[0] == isotonic.y[1] == pytest.approx(1 / 3)


def test_fit_dispatches_on_the_kind() -> None:
    scores, labels = _clicks(1000, a=1.0, b=0.0)
    assert isinstance(fit("none", scores, labels), NoCalibration)
    assert isinstance(fit("platt", scores, labels), Platt)
    assert isinstance(fit("isotonic", scores, labels), Isotonic)


def test_isotonic_knots_must_be_monotone() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Isotonic(x=[0.0, 1.0, 0.5], y=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="probabilities"):
        Isotonic(x=[0.0, 1.0], y=[0.1, 1.5])


@pytest.mark.parametrize(("overrides", "expected"), [
    (["data.task=binary"], "isotonic"),
    ([], "none"),  # regression
    (["data.task=binary", "data.validation_negative_keep_rate=0.5"], "none"),
    (["data.task=binary", "train.calibration=platt"], "platt"),
    (["data.task=binary", "train.calibration=none"], "none"),
])
def test_auto_calibration_is_isotonic_for_binary_tasks_on_every_validation_row(
        overrides: list[str], expected: str) -> None:
    cfg = load_config(REPO / "configs" / "synthetic-afm.toml", overrides)
    assert cfg.calibration() == expected
