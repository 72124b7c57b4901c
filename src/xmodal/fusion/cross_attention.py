"""Intermediate fusion through attention bottlenecks (Nagrani et al., "Attention Bottlenecks for
Multimodal Fusion", NeurIPS 2021).

Each modality has its own transformer layers over ``[its tokens; shared bottleneck tokens]``; after
every layer the bottleneck tokens are averaged over the modalities present in each sample, so
cross-modal information flows only through the few bottleneck tokens, and an absent modality
contributes nothing (weight 0 in the average and in the pooled output).
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.fusion.base import FUSIONS, FusionParams, encoder_layer, presence_weights


class BottleneckFusion(nn.Module):
    def __init__(self, widths: dict[str, int], num_classes: int, params: FusionParams) -> None:
        super().__init__()
        self.order = list(widths)
        self.proj = nn.ModuleDict({m: nn.Linear(w, params.dim) for m, w in widths.items()})
        self.bottleneck = nn.Parameter(torch.randn(1, params.bottlenecks, params.dim) * 0.02)
        self.layers = nn.ModuleDict({m: nn.ModuleList(encoder_layer(params) for _ in range(params.depth)) for m in self.order})
        self.norm = nn.LayerNorm(params.dim)
        self.head = nn.Sequential(nn.Dropout(params.dropout), nn.Linear(params.dim, num_classes))

    def forward(self, tokens: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        w = presence_weights(present, self.order).to(self.bottleneck.device)  # [B, M]
        xs = {m: self.proj[m](tokens[m]) for m in self.order}
        z = self.bottleneck.expand(len(w), -1, -1)
        for depth in range(len(self.layers[self.order[0]])):
            zs = []
            for m in self.order:
                n = xs[m].shape[1]
                out = self.layers[m][depth](torch.cat([xs[m], z], 1))
                xs[m] = out[:, :n]
                zs.append(out[:, n:])
            z = (torch.stack(zs, 1) * w[:, :, None, None]).sum(1)
        pooled = (torch.stack([xs[m].mean(1) for m in self.order], 1) * w[:, :, None]).sum(1)
        return self.head(self.norm(pooled + z.mean(1)))


FUSIONS.register("cross_attention", BottleneckFusion)
