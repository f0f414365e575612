import itertools

import numpy as np
import pytest

from training.metrics import (
    LOWER_IS_BETTER,
    TASK_METRICS,
    auc,
    calibration,
    evaluate_predictions,
    evaluate_scores,
    logloss,
    monitored,
    normalized_entropy,
    rmse,
)


def test_rmse_clips_predictions_to_the_label_range() -> None:
    labels = np.array([1.0, -1.0])
    assert rmse(labels, np.array([3.0, -0.5]), (-1.0, 1.0)) == pytest.approx(np.sqrt(0.125))


def test_auc_matches_pair_counting_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200).astype(float)
    scores = rng.integers(0, 10, 200).astype(float)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    assert auc(labels, scores) == pytest.approx(wins / (len(pos) * len(neg)))


def test_auc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both"):
        auc(np.ones(3), np.arange(3.0))


def test_logloss_is_stable_for_large_logits() -> None:
    value = logloss(np.array([1.0, 0.0]), np.array([1000.0, -1000.0]))
    assert value == pytest.approx(0.0, abs=1e-12)
    expected = -np.mean([np.log(1 / (1 + np.exp(-0.3))), np.log(1 - 1 / (1 + np.exp(-0.2)))])
    assert logloss(np.array([1.0, 0.0]), np.array([0.3, 0.2])) == pytest.approx(expected)


# Four rows, one positive (base rate 1/4), predicted 3/4, 1/2, 1/4 and 1/2.
LABELS = np.array([1.0, 0.0, 0.0, 0.0])
PROBABILITIES = np.array([0.75, 0.5, 0.25, 0.5])
# -(ln 3/4 + ln 1/2 + ln 3/4 + ln 1/2) / 4
LOGLOSS = (2 * np.log(4 / 3) + 2 * np.log(2)) / 4
# entropy of 1/4: -(1/4 ln 1/4 + 3/4 ln 3/4)
BASE_ENTROPY = 0.25 * np.log(4) + 0.75 * np.log(4 / 3)


def test_normalized_entropy_and_calibration_by_hand() -> None:
    assert LOGLOSS == pytest.approx(0.4904146, abs=1e-7)
    assert BASE_ENTROPY == pytest.approx(0.5623351, abs=1e-7)
    assert normalized_entropy(LABELS, LOGLOSS) == pytest.approx(0.8721039, abs=1e-7)
    assert calibration(LABELS, PROBABILITIES) == pytest.approx(2.0)  # mean 1/2 over rate 1/4
    # predicting the base rate everywhere: NE 1, calibration 1
    base = np.full(4, 0.25)
    assert normalized_entropy(LABELS, -np.mean(LABELS * np.log(base) + (1 - LABELS) * np.log(1 - base))) \
        == pytest.approx(1.0)
    assert calibration(LABELS, base) == pytest.approx(1.0)


def test_binary_metrics_of_scores_and_of_probabilities_agree() -> None:
    logits = np.log(PROBABILITIES / (1 - PROBABILITIES))
    from_scores = evaluate_scores("binary", LABELS, logits, (0.0, 1.0))
    from_probabilities = evaluate_predictions("binary", LABELS, PROBABILITIES, (0.0, 1.0))
    assert list(from_scores) == ["auc", "logloss", "ne", "calibration"]
    for metrics in (from_scores, from_probabilities):
        assert metrics["logloss"] == pytest.approx(LOGLOSS)
        assert metrics["ne"] == pytest.approx(LOGLOSS / BASE_ENTROPY)
        assert metrics["calibration"] == pytest.approx(2.0)
        assert metrics["auc"] == pytest.approx(1.0)  # the positive has the highest probability


def test_probabilities_of_0_and_1_have_a_finite_logloss() -> None:
    metrics = evaluate_predictions("binary", np.array([1.0, 0.0]), np.array([0.0, 1.0]), (0.0, 1.0))
    assert metrics["logloss"] == pytest.approx(-np.log(1e-7), rel=1e-6)


def test_ne_and_calibration_need_both_classes() -> None:
    with pytest.raises(ValueError, match="both"):
        normalized_entropy(np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="both"):
        calibration(np.ones(3), np.full(3, 0.5))


def test_ne_is_watched_lower_is_better_and_only_for_binary_tasks() -> None:
    from training.loop import EarlyStopping

    assert monitored("binary", "ne") == "ne"
    with pytest.raises(ValueError, match="not 'ne'"):
        monitored("regression", "ne")
    stopping = EarlyStopping("binary", patience=1, metric="ne")
    assert stopping.update(1, 0.80) and stopping.update(2, 0.79) and not stopping.update(3, 0.81)


def test_every_metric_a_task_reports_says_which_way_is_better() -> None:
    for task, metrics in TASK_METRICS.items():
        assert monitored(task) in metrics
        assert all(metric in LOWER_IS_BETTER for metric in metrics)
    assert LOWER_IS_BETTER["rmse"] and LOWER_IS_BETTER["logloss"] and not LOWER_IS_BETTER["auc"]
