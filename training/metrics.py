"""Evaluation metrics on numpy arrays (torch-free, so `afm-eval` needs only the bundle).

Binary tasks report, beside AUC and logloss, the two figures click models are judged by
(He et al., "Practical Lessons from Predicting Clicks on Ads at Facebook", 2014):
normalized entropy, the logloss divided by the entropy of the evaluated rows' base rate (1:
no better than predicting the base rate; lower is better), and calibration, the mean
predicted probability over the observed positive rate (1: as many clicks predicted as seen).
Calibration is reported, not selectable: a constant model at the base rate scores a perfect
1, so it says nothing about which epoch or trial ranks rows best.
"""

from __future__ import annotations

import numpy as np

from model.calibration import sigmoid
from model.manifest import Task

EPSILON = 1e-7
"""Probabilities are clipped this far from 0 and 1 before their log (float32 reaches 1.0)."""
# What each task's early stopping watches unless told otherwise.
MONITOR: dict[Task, str] = {"regression": "rmse", "binary": "auc"}


def rmse(labels: np.ndarray, scores: np.ndarray, label_range: tuple[float, float]) -> float:
    """RMSE with predictions clipped to the label range, as in the paper's protocol."""
    clipped = np.clip(scores.astype(np.float64), *label_range)
    return float(np.sqrt(np.mean((clipped - labels) ** 2)))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum statistic; ties share their mean rank."""
    labels = labels.astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs both positive and negative labels")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    mean_ranks = (starts + ends + 1) / 2.0  # 1-based mean rank of each run of ties
    ranks[order] = np.repeat(mean_ranks, ends - starts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def logloss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Binary cross-entropy computed from logits, stable for large |logit|."""
    logits = logits.astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, logits) - labels * logits))


def probability_logloss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Binary cross-entropy of probabilities, each clipped to [EPSILON, 1 - EPSILON]."""
    p = np.clip(probabilities.astype(np.float64), EPSILON, 1.0 - EPSILON)
    return float(-np.mean(labels * np.log(p) + (1.0 - labels) * np.log1p(-p)))


def base_rate(labels: np.ndarray) -> float:
    """The positive share of the rows; NE and calibration need both classes."""
    rate = float(np.mean(labels)) if len(labels) else 0.0
    if not 0.0 < rate < 1.0:
        raise ValueError("normalized entropy and calibration need both positive and negative labels")
    return rate


def normalized_entropy(labels: np.ndarray, loss: float) -> float:
    """A logloss over the entropy (in nats) of the rows' base rate."""
    rate = base_rate(labels)
    return float(loss / -(rate * np.log(rate) + (1.0 - rate) * np.log1p(-rate)))


def calibration(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean predicted probability over the observed positive rate."""
    return float(np.mean(probabilities, dtype=np.float64)) / base_rate(labels)


def evaluate_scores(
    task: Task, labels: np.ndarray, scores: np.ndarray, label_range: tuple[float, float]
) -> dict[str, float]:
    """Metrics of raw scores: logits for binary tasks, values for regression."""
    if task == "binary":
        loss = logloss(labels, scores)
        return {"auc": auc(labels, scores), "logloss": loss,
                "ne": normalized_entropy(labels, loss), "calibration": calibration(labels, sigmoid(scores))}
    return {"rmse": rmse(labels, scores, label_range)}


def evaluate_predictions(
    task: Task, labels: np.ndarray, predictions: np.ndarray, label_range: tuple[float, float]
) -> dict[str, float]:
    """The same metrics of what a user is served: probabilities for binary tasks (after any
    calibration map, which need not have a logit), clipped values for regression."""
    if task == "binary":
        loss = probability_logloss(labels, predictions)
        return {"auc": auc(labels, predictions), "logloss": loss,
                "ne": normalized_entropy(labels, loss), "calibration": calibration(labels, predictions)}
    return {"rmse": rmse(labels, predictions, label_range)}


# Whether lower is better, for every metric early stopping or a tuner may watch.
LOWER_IS_BETTER: dict[str, bool] = {"rmse": True, "logloss": True, "ne": True, "auc": False}
TASK_METRICS: dict[Task, tuple[str, ...]] = {"regression": ("rmse",), "binary": ("auc", "logloss", "ne")}


def monitored(task: Task, choice: str = "") -> str:
    """The metric early stopping watches: `choice` if the task has it, the task's default if ""."""
    if not choice:
        return MONITOR[task]
    if choice not in TASK_METRICS[task]:
        raise ValueError(f"a {task} task reports {' or '.join(TASK_METRICS[task])}, not {choice!r}")
    return choice
