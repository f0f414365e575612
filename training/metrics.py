"""Evaluation metrics on numpy arrays (torch-free, so `afm-eval` needs only the bundle)."""

from __future__ import annotations

import numpy as np

from model.manifest import Task

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


def evaluate_scores(
    task: Task, labels: np.ndarray, scores: np.ndarray, label_range: tuple[float, float]
) -> dict[str, float]:
    if task == "binary":
        return {"auc": auc(labels, scores), "logloss": logloss(labels, scores)}
    return {"rmse": rmse(labels, scores, label_range)}


# Whether lower is better, for every metric early stopping or a tuner may watch.
LOWER_IS_BETTER: dict[str, bool] = {"rmse": True, "logloss": True, "auc": False}
TASK_METRICS: dict[Task, tuple[str, ...]] = {"regression": ("rmse",), "binary": ("auc", "logloss")}


def monitored(task: Task, choice: str = "") -> str:
    """The metric early stopping watches: `choice` if the task has it, the task's default if ""."""
    if not choice:
        return MONITOR[task]
    if choice not in TASK_METRICS[task]:
        raise ValueError(f"a {task} task reports {' or '.join(TASK_METRICS[task])}, not {choice!r}")
    return choice
