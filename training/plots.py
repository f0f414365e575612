"""Plots saved with a run: learning curves and the field-pair attention heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from model.manifest import Manifest  # noqa: E402


def save_plots(out: Path, history: list[dict[str, Any]], manifest: Manifest) -> None:
    _learning_curves(out / "learning_curves.png", history)
    _attention_heatmap(out / "attention_heatmap.png", manifest)


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
