import itertools

import numpy as np
import pytest

from training.metrics import LOWER_IS_BETTER, TASK_METRICS, auc, logloss, monitored, rmse


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


def test_every_metric_a_task_reports_says_which_way_is_better() -> None:
    for task, metrics in TASK_METRICS.items():
        assert monitored(task) in metrics
        assert all(metric in LOWER_IS_BETTER for metric in metrics)
    assert LOWER_IS_BETTER["rmse"] and LOWER_IS_BETTER["logloss"] and not LOWER_IS_BETTER["auc"]
