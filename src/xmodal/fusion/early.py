"""Early fusion: every modality's tokens, projected to one width and tagged with a modality
embedding, are concatenated with a class token into one joint transformer encoder.

Tokens of absent modalities are masked out of attention (key padding), so they cannot reach the
class token.
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.fusion.base import FUSIONS, FusionParams, encoder_layer


class EarlyFusion(nn.Module):
    def __init__(self, widths: dict[str, int], num_classes: int, params: FusionParams) -> None:
        super().__init__()
        self.order = list(widths)
        self.proj = nn.ModuleDict({m: nn.Linear(w, params.dim) for m, w in widths.items()})
        self.modality_embed = nn.Parameter(torch.randn(len(self.order), params.dim) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, params.dim))
        self.layers = nn.ModuleList(encoder_layer(params) for _ in range(params.depth))
        self.norm = nn.LayerNorm(params.dim)
        self.head = nn.Sequential(nn.Dropout(params.dropout), nn.Linear(params.dim, num_classes))

    def forward(self, tokens: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        b = len(next(iter(present.values())))
        parts, pad = [self.cls.expand(b, -1, -1)], [torch.zeros(b, 1, dtype=torch.bool)]
        for i, m in enumerate(self.order):
            x = self.proj[m](tokens[m]) + self.modality_embed[i]
            parts.append(x)
            pad.append((~present[m]).unsqueeze(1).expand(-1, x.shape[1]))
        x, mask = torch.cat(parts, 1), torch.cat(pad, 1).to(parts[0].device)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=mask)
        return self.head(self.norm(x[:, 0]))


FUSIONS.register("early", EarlyFusion)
