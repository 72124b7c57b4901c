"""PNG plots for reports (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, classnames: Sequence[str], path: str | Path, title: str = "",
                   highlight: Sequence[str] = ()) -> Path:
    """Row-normalised confusion matrix; class names in ``highlight`` are drawn in red. Rows of
    classes with no test items are left out (columns keep every class that can be predicted)."""
    plt = pyplot()
    cm = np.asarray(cm)
    rows = [i for i in range(len(classnames)) if cm[i].sum() > 0] or list(range(len(classnames)))
    n = len(classnames)
    norm = cm[rows] / np.maximum(cm[rows].sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.32 * n + 2) + 1, max(3.0, 0.32 * len(rows) + 2)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(n), classnames, rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), [classnames[i] for i in rows], fontsize=7)
    for label in list(ax.get_xticklabels()) + list(ax.get_yticklabels()):
        if label.get_text() in set(highlight):
            label.set_color("crimson")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_history(epochs: Sequence[dict[str, float]], path: str | Path, metrics: Sequence[str] = ("val_top1",)) -> Path:
    """Training loss (left axis) and validation metrics (right axis) per epoch."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = [e["epoch"] for e in epochs]
    ax.plot(x, [e["loss"] for e in epochs], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    ax2 = ax.twinx()
    for m in metrics:
        if all(m in e for e in epochs):
            ax2.plot(x, [e[m] for e in epochs], "s--", color=f"C{1 + list(metrics).index(m)}", label=m)
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("validation")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="center right", fontsize=8)
    ax.set_title("alignment training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_per_class(per_class: dict[str, float], path: str | Path, highlight: Sequence[str] = (), title: str = "") -> Path:
    """Bar chart of per-class accuracy; ``highlight`` classes (e.g. held out) in a second colour."""
    plt = pyplot()
    names = list(per_class)
    values = [0.0 if v is None or np.isnan(v) else v for v in per_class.values()]
    colours = ["crimson" if n in set(highlight) else "tab:blue" for n in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(names) + 1), 3.6))
    ax.bar(range(len(names)), values, color=colours)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    if highlight:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color="tab:blue", label="seen in training"), Patch(color="crimson", label="held out")],
                  fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
