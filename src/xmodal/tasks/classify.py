"""Classification metrics from logits: top-1/top-5, mean class accuracy, per-class accuracy, confusion."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from xmodal.eval.metrics import confusion_matrix, per_class_accuracy, topk_accuracy


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """``logits [N, C]``, ``targets [N]`` (class indices) -> top1, top5, mean_class_accuracy (NaN-free
    mean over classes with items), per_class and the confusion matrix (rows = true)."""
    cm = confusion_matrix(logits.argmax(1), targets, len(classes))
    per_class = per_class_accuracy(cm)
    return {
        "top1": topk_accuracy(logits, targets, 1),
        "top5": topk_accuracy(logits, targets, 5),
        "mean_class_accuracy": float(np.nanmean(per_class)) if len(targets) else float("nan"),
        "per_class": {c: (None if np.isnan(v) else float(v)) for c, v in zip(classes, per_class)},
        "confusion": cm,
    }
