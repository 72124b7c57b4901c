"""Classification and retrieval metrics on score matrices."""

from __future__ import annotations

import numpy as np
import torch


def topk_accuracy(scores: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """Fraction of rows whose target is among the ``k`` highest ``scores`` (``[N, C]``)."""
    if len(targets) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return float((top == targets[:, None]).any(1).float().mean())


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> np.ndarray:
    """``[C, C]`` counts: row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (targets.numpy(), preds.numpy()), 1)
    return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN for classes with no samples)."""
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def retrieval_metrics(sim: torch.Tensor, positives: torch.Tensor | None = None, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K, median and mean rank of query rows against gallery columns of ``sim`` (``[Q, G]``).

    ``positives`` (bool ``[Q, G]``) marks correct items; default: the diagonal. The rank of a query is
    that of its best-ranked positive (1 = first)."""
    if positives is None:
        positives = torch.eye(sim.shape[0], sim.shape[1], dtype=torch.bool)
    order = sim.argsort(dim=1, descending=True)
    hits = torch.gather(positives, 1, order)
    ranks = hits.float().argmax(1) + 1
    out = {f"R@{k}": float((ranks <= k).float().mean()) for k in ks}
    out["median_rank"] = float(ranks.float().median())
    out["mean_rank"] = float(ranks.float().mean())
    return out
