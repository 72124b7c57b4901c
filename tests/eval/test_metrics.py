import numpy as np
import torch

from xmodal.eval.metrics import confusion_matrix, per_class_accuracy, retrieval_metrics, topk_accuracy


def test_topk_and_confusion():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    y = torch.tensor([0, 1, 1])
    assert abs(topk_accuracy(scores, y, 1) - 2 / 3) < 1e-6
    assert topk_accuracy(scores, y, 2) == 1.0
    cm = confusion_matrix(scores.argmax(1), y, 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    acc = per_class_accuracy(cm)
    assert acc[0] == 1.0 and acc[1] == 0.5 and np.isnan(acc[2])


def test_retrieval_metrics_perfect_and_reversed():
    sim = torch.eye(5)
    perfect = retrieval_metrics(sim)
    assert perfect["R@1"] == 1.0 and perfect["median_rank"] == 1.0
    worst = retrieval_metrics(-torch.eye(5), ks=(1, 5))
    assert worst["R@1"] == 0.0 and worst["R@5"] == 1.0 and worst["median_rank"] == 5.0
