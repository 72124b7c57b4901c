"""The fusion interface, its registry, and modality dropout.

A fusion combines per-modality token streams into class logits. It is built as
``FUSIONS.get(name)(widths, num_classes, params)`` (``widths``: modality -> token width of its
encoder) and called as ``fusion(tokens, present)`` with ``tokens[m]: [B, N_m, width_m]`` and
``present[m]: bool [B]``; an absent modality's tokens are placeholders that must not change the
output (every fusion is tested for that), so any subset of modalities may be missing at test time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from xmodal.registry import Registry


@dataclass
class FusionParams:
    dim: int = 64  # width of the fused tokens / features
    depth: int = 1  # transformer layers (early: joint encoder; cross_attention: per-modality layers)
    heads: int = 4  # attention heads
    bottlenecks: int = 4  # cross_attention: shared bottleneck tokens between modality streams
    dropout: float = 0.1  # dropout inside the fusion and before classifier heads


@runtime_checkable
class Fusion(Protocol):
    """``forward(tokens, present) -> logits [B, num_classes]``."""

    def forward(self, tokens: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor: ...


FUSIONS: Registry[type] = Registry("fusion")


def presence_weights(present: dict[str, torch.Tensor], order: list[str]) -> torch.Tensor:
    """``[B, M]`` float: 1/(number present) for present modalities, 0 for absent ones."""
    mask = torch.stack([present[m] for m in order], 1).float()
    return mask / mask.sum(1, keepdim=True).clamp(min=1)


def encoder_layer(p: FusionParams) -> nn.Module:
    """A pre-norm transformer encoder layer of width ``p.dim``."""
    return nn.TransformerEncoderLayer(p.dim, p.heads, 2 * p.dim, p.dropout, activation="gelu", batch_first=True,
                                      norm_first=True)


def modality_dropout(present: dict[str, torch.Tensor], p: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Drop each present modality of each sample with probability ``p`` (training only), keeping at
    least one per sample that had any (Neverova et al., ModDrop, 2015)."""
    if p <= 0 or not present:
        return present
    names = list(present)
    mask = torch.stack([present[m] for m in names], 1)
    keep = mask & (torch.rand(mask.shape, generator=generator) >= p)
    lost = ~keep.any(1) & mask.any(1)
    pick = torch.rand(mask.shape, generator=generator).masked_fill(~mask, -1.0).argmax(1)
    keep[lost, pick[lost]] = True
    return {m: keep[:, i] for i, m in enumerate(names)}
