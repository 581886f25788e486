"""Figures people would rather look at than read: curves, per-type accuracy, reconstructions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files and MLflow, never to a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def training_curves(histories: dict[str, list[dict[str, float]]]) -> Figure:
    """One panel per stage: every metric of its history against the epoch."""
    stages = [name for name, history in histories.items() if history]
    fig, axes = plt.subplots(1, max(len(stages), 1), figsize=(5 * max(len(stages), 1), 3.6), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        history = histories[stage]
        epochs = [row["epoch"] + 1 for row in history]
        for key in sorted(k for k in history[0] if k != "epoch"):
            ax.plot(epochs, [row.get(key, np.nan) for row in history], marker="o", markersize=3, label=key)
        ax.set_title(stage)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_by_type(results: dict[str, dict[str, float]], counts: dict[str, int]) -> Figure:
    """Grouped bars: accuracy per question type for each model (e.g. the model and its baseline)."""
    types = list(counts)
    fig, ax = plt.subplots(figsize=(1.6 * len(types) + 2, 3.6))
    width = 0.8 / max(len(results), 1)
    for offset, (label, by_type) in enumerate(results.items()):
        xs = np.arange(len(types)) + offset * width
        ax.bar(xs, [by_type.get(t, 0.0) for t in types], width, label=label)
    ax.set_xticks(np.arange(len(types)) + width * (len(results) - 1) / 2)
    ax.set_xticklabels([f"{t}\n(n={counts[t]})" for t in types])
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def image_grid(rows: np.ndarray) -> np.ndarray:
    """uint8 [R, C, H, W, 3] -> one uint8 image [R*H, C*W, 3] with a 1-pixel gap."""
    r, c, h, w, _ = rows.shape
    grid = np.full((r * (h + 1), c * (w + 1), 3), 255, dtype=np.uint8)
    for i in range(r):
        for j in range(c):
            grid[i * (h + 1):i * (h + 1) + h, j * (w + 1):j * (w + 1) + w] = rows[i, j]
    return grid


def save_png(image: np.ndarray, path, min_width: int = 480) -> None:
    """Write an RGB uint8 image; small ones are enlarged (nearest neighbour) so pixels stay visible."""
    from PIL import Image

    picture = Image.fromarray(image)
    scale = max(1, min_width // max(picture.width, 1))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    picture.save(path)
