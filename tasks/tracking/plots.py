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


def ablation_chart(runs: list[dict], counts: dict[str, int]) -> Figure:
    """Grouped bars with seed spread: overall test accuracy, then per question type, one bar per variant."""
    types = ["overall", *counts]
    total = sum(counts.values())
    fig, ax = plt.subplots(figsize=(1.6 * len(types) + 2, 3.8))
    width = 0.8 / max(len(runs), 1)
    for offset, run in enumerate(runs):
        means = [run["test_acc_mean"], *(run["test_acc_by_type"].get(t, 0.0) for t in counts)]
        spreads = [run["test_acc_std"], *(run["test_acc_by_type_std"].get(t, 0.0) for t in counts)]
        ax.bar(np.arange(len(types)) + offset * width, means, width, yerr=spreads, capsize=2,
               label=f"{run['name']} (n={len(run['seeds'])})")
    ax.set_xticks(np.arange(len(types)) + width * (len(runs) - 1) / 2)
    ax.set_xticklabels([f"{t}\n(n={counts.get(t, total)})" for t in types])
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy (mean ± sd over seeds)")
    ax.legend(fontsize=8)
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


def labelled_grid(rows: np.ndarray, row_labels: list[str], column_labels: list[str], title: str = "") -> Figure:
    """uint8 [R, C, H, W, 3] as one picture whose rows and columns are named (e.g. input / decoded, clip and frame).

    Tick labels rather than drawn text, so the pixels stay the model's and the labels stay readable at any size.
    """
    r, c, h, w, _ = rows.shape
    if len(row_labels) != r or len(column_labels) != c:
        raise ValueError(f"{r} rows x {c} columns need as many labels, got {len(row_labels)} x {len(column_labels)}")
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * c + 1.8), max(2.5, 1.1 * r + 0.8)))
    ax.imshow(image_grid(rows), interpolation="nearest")
    ax.set_xticks([j * (w + 1) + w / 2 for j in range(c)], column_labels, fontsize=8)
    ax.set_yticks([i * (h + 1) + h / 2 for i in range(r)], row_labels, fontsize=8)
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
