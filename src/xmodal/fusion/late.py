"""Late fusion: one classifier head per modality, log-probabilities combined by learned weights.

The weights are a softmax over the modalities present in each sample, so a missing modality simply
drops out of the (weighted product-of-experts) combination.
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.fusion.base import FUSIONS, FusionParams


class LateFusion(nn.Module):
    def __init__(self, widths: dict[str, int], num_classes: int, params: FusionParams) -> None:
        super().__init__()
        self.order = list(widths)
        self.heads = nn.ModuleDict({m: nn.Sequential(nn.LayerNorm(w), nn.Dropout(params.dropout), nn.Linear(w, num_classes))
                                    for m, w in widths.items()})
        self.weights = nn.Parameter(torch.zeros(len(self.order)))

    def forward(self, tokens: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        logp = torch.stack([self.heads[m](tokens[m].mean(1)).log_softmax(-1) for m in self.order], 1)  # [B, M, C]
        mask = torch.stack([present[m] for m in self.order], 1)
        w = self.weights.expand(len(mask), -1).masked_fill(~mask, float("-inf")).softmax(1).nan_to_num(0.0)
        return (w.unsqueeze(-1) * logp).sum(1)


FUSIONS.register("late", LateFusion)
