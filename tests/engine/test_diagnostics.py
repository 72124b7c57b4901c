"""Collapse diagnostics: mean pairwise cosine and effective rank of a batch, and the one-line verdict."""

import pytest
import torch

from xmodal.engine.diagnostics import collapse, effective_rank, mean_pairwise_cosine, spread


def test_one_point_has_cosine_one_and_rank_one():
    x = torch.randn(1, 8).repeat(6, 1)
    assert mean_pairwise_cosine(x) == pytest.approx(1.0, abs=1e-5)
    assert effective_rank(x) == pytest.approx(1.0, abs=1e-3)


def test_orthogonal_directions_have_cosine_zero_and_full_rank():
    x = torch.eye(5, 8) * torch.tensor([3.0, 1, 2, 5, 1])[:, None]  # lengths do not matter
    assert mean_pairwise_cosine(x) == pytest.approx(0.0, abs=1e-6)
    assert effective_rank(x) == pytest.approx(5.0, abs=1e-4)


def test_spread_names_its_keys_after_the_modality():
    assert set(spread(torch.randn(4, 3), "audio")) == {"cos_audio", "rank_audio"}


def test_collapse_is_one_line_and_only_when_the_other_side_is_spread():
    healthy = {"epoch": 2, "cos_audio": 0.6, "rank_audio": 7.5, "cos_text": 0.65, "rank_text": 7.9}
    assert collapse(healthy, "audio", "text") is None
    bad = {**healthy, "cos_audio": 0.98, "rank_audio": 1.1}
    line = collapse(bad, "audio", "text")
    assert line and "\n" not in line and "audio" in line and "epoch 2" in line
    same_as_data = {**bad, "cos_text": 0.99, "rank_text": 1.05}  # the paired side is as narrow: the data is
    assert collapse(same_as_data, "audio", "text") is None
    assert collapse(bad, "audio") and collapse({"epoch": 1}, "audio") is None
    probe = {"epoch": 3, "eval_cos_audio": 0.999, "eval_rank_audio": 1.0, "eval_cos_text": 0.6, "eval_rank_text": 8.0}
    assert "in evaluation mode at epoch 3" in collapse(probe, "audio", "text", "eval_")
    assert collapse(probe, "audio", "text") is None  # training-batch numbers were not recorded
