"""Plots saved with a run: learning curves, the field-pair attention heatmap and, for binary
tasks, the reliability diagram of the validation rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from model.manifest import Manifest  # noqa: E402

RELIABILITY_BINS = 20


def save_plots(out: Path, history: list[dict[str, Any]], manifest: Manifest,
               served: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """`served`: the validation rows' labels and served probabilities (binary tasks)."""
    _learning_curves(out / "learning_curves.png", history)
    _attention_heatmap(out / "attention_heatmap.png", manifest)
    if served is not None:
        reliability_diagram(out / "reliability.png", *served, title=f"{manifest.name}, validation")


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = RELIABILITY_BINS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows in log-spaced probability bins (click rates span decades) -> per non-empty bin:
    mean predicted probability, observed positive rate, rows."""
    p = np.clip(probabilities.astype(np.float64), 1e-6, 1.0)
    edges = np.geomspace(p.min(), 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    rows = np.bincount(which, minlength=bins)
    kept = rows > 0
    predicted = np.bincount(which, weights=p, minlength=bins)[kept] / rows[kept]
    observed = np.bincount(which, weights=labels.astype(np.float64), minlength=bins)[kept] / rows[kept]
    return predicted, observed, rows[kept]


def reliability_diagram(path: Path, labels: np.ndarray, probabilities: np.ndarray,
                        title: str) -> None:
    predicted, observed, rows = reliability_bins(labels, probabilities)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    low = max(min(predicted.min(), observed[observed > 0].min(initial=1.0)) / 1.5, 1e-6)
    ax.plot([low, 1], [low, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    ax.plot(predicted, np.maximum(observed, low), marker="o", label="model (rows per bin beside)")
    for x, y, n in zip(predicted, observed, rows, strict=True):
        ax.annotate(f"{n}", (x, max(y, low)), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xscale="log", yscale="log", xlim=(low, 1), ylim=(low, 1), xlabel="mean predicted probability",
           ylabel="observed positive rate",
           title=f"{title}: {len(labels)} rows, mean {probabilities.mean():.4f} vs {labels.mean():.4f}")
    ax.title.set_fontsize(9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _learning_curves(path: Path, history: list[dict[str, Any]]) -> None:
    epochs = [row["epoch"] for row in history]
    metrics = [key for key in history[0] if key.startswith("validation_")]
    fig, axes = plt.subplots(1, 1 + len(metrics), figsize=(4.5 * (1 + len(metrics)), 3.5))
    axes[0].plot(epochs, [row["train_loss"] for row in history])
    axes[0].set(title="training loss", xlabel="epoch")
    for ax, key in zip(axes[1:], metrics, strict=True):
        ax.plot(epochs, [row[key] for row in history])
        ax.set(title=key.replace("_", " "), xlabel="epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _attention_heatmap(path: Path, manifest: Manifest) -> None:
    names = [f.name for f in manifest.fields]
    position = {name: i for i, name in enumerate(names)}
    grid = np.full((len(names), len(names)), np.nan)
    for pair in manifest.importance:
        i, j = position[pair.fields[0]], position[pair.fields[1]]
        grid[i, j] = grid[j, i] = pair.mean_attention
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 0.8 + 0.6 * len(names)))
    image = ax.imshow(grid, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_title(f"mean attention per field pair ({manifest.kind}, validation)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
