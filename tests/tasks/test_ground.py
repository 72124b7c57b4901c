"""The grounding task's pieces: span targets, span decoding, the zero-shot window, metrics, bad rows."""

from __future__ import annotations

import pytest
import torch

from xmodal.errors import DataError
from xmodal.tasks.ground import (GroundConfig, GroundingHead, GroundTask, SlidingWindow, best_span, grounding_metrics,
                                 span_targets, temporal_iou, to_seconds)


def test_span_targets_cover_the_moment_in_frames():
    t = span_targets(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.6]), torch.tensor([4.0, 4.0]), 16)
    assert t["start_idx"].tolist() == [0, 4] and t["end_idx"].tolist() == [3, 10]
    assert t["inside"][1].nonzero()[:, 0].tolist() == list(range(4, 11))


def test_best_span_never_ends_before_it_starts():
    start, end = torch.full((1, 8), -5.0), torch.full((1, 8), -5.0)
    start[0, 4], end[0, 6], end[0, 1] = 5.0, 5.0, 9.0  # the best end alone lies before the start
    assert best_span(start, end).tolist() == [[4, 6]]


def test_seconds_and_iou():
    assert to_seconds(torch.tensor([[4, 9]]), torch.tensor([4.0]), 16).tolist() == [[1.0, 2.5]]
    iou = temporal_iou(torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([[1.0, 3.0], [2.0, 3.0]]))
    assert iou.tolist() == pytest.approx([0.5, 0.0])
    m = grounding_metrics(torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([[1.0, 2.5], [2.0, 3.0]]))
    assert m["R1@0.3"] == 0.5 and m["R1@0.7"] == 0.0 and m["mIoU"] == pytest.approx(1 / 3)


def test_sliding_window_finds_the_stretch_that_matches_the_sentence():
    torch.manual_seed(0)
    seq = torch.randn(3, 16, 256)  # nearly orthogonal frames
    query = torch.stack([seq[0, 5:9].mean(0), seq[1, 0:3].mean(0), seq[2, 12:].mean(0)])
    assert SlidingWindow().spans(seq, query).tolist() == [[5, 8], [0, 2], [12, 15]]


def test_grounding_head_shapes_and_training_signal():
    torch.manual_seed(0)
    head = GroundingHead(8, 6, GroundConfig(width=16, layers=1), max_frames=16)
    seq, text = torch.randn(4, 16, 8), torch.randn(4, 6)
    assert head(seq, text).shape == (4, 16, 3)
    spans = head.spans(seq, text)
    assert spans.shape == (4, 2) and bool((spans[:, 0] <= spans[:, 1]).all())


def test_bad_grounding_rows_name_the_row():
    task, cfg = GroundTask(), GroundConfig()
    rows = [{"path": "a.mp4", "query": "x", "start": 1, "end": 5, "duration": 4}]
    with pytest.raises(DataError, match="row 1 .*not inside"):
        task.targets(rows, {"num_frames": 16}, cfg, "g.csv")
    with pytest.raises(DataError, match="row 1 .*not a number"):
        task.targets([{**rows[0], "end": "soon"}], {"num_frames": 16}, cfg, "g.csv")
    with pytest.raises(DataError, match="empty 'query'"):
        task.targets([{**rows[0], "end": 2, "query": " "}], {"num_frames": 16}, cfg, "g.csv")
