"""Video-text retrieval in the shared space: R@1/5/10 and median rank, in both directions."""

from __future__ import annotations

from typing import Sequence

import torch

from xmodal.eval.metrics import retrieval_metrics


def text_retrieval(video: torch.Tensor, text: torch.Tensor, captions: Sequence[str]) -> dict[str, float]:
    """``video [N, D]`` and ``text [N, D]`` (row i = clip i and its caption), L2-normalised.

    Identical captions count as correct matches of each other's clips. Keys ``v2t_R@1``, ...,
    ``v2t_median_rank``, ``t2v_R@1``, ..., ``t2v_median_rank``."""
    same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.bool)
    sim = video.float() @ text.float().t()
    out = {f"v2t_{k}": v for k, v in retrieval_metrics(sim, same).items()}
    out.update({f"t2v_{k}": v for k, v in retrieval_metrics(sim.t(), same.t()).items()})
    return out
