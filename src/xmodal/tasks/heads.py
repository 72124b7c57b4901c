"""Small heads over a sequence of per-frame features ``[B, T, F]`` (post-network tuning).

Every task head pools the frame features a strategy yields with a ``TemporalHead`` configured by the
strategy's ``head`` settings, so strategies that modify the backbone (full, partial, adapter, lora,
prompt) and the frozen ``temporal_head`` differ only in the backbone. Variants (``HeadConfig.kind``):

- ``linear``: average over frames, a LayerNorm without affine parameters and one linear layer (the
  linear probe of CLIP, Radford et al., 2021);
- ``mean``: average over frames, then a linear classifier (order-blind: a clip and its time-reversed
  twin get the same score);
- ``attention``: a learned query attends over position-tagged frames (attention pooling);
- ``transformer``: a temporal transformer over the frames, then mean pooling (CLIP4Clip's
  "seqTransf", Luo et al., 2021);
- ``conv``: residual 1-D temporal convolutions, then mean pooling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xmodal.errors import ConfigError

KINDS = ("linear", "mean", "attention", "transformer", "conv")


@dataclass
class HeadConfig:
    kind: str = "transformer"  # temporal pooling: "linear", "mean", "attention", "transformer" (seqTransf) or "conv"
    width: int = 16  # hidden width; input features are normalised and projected to it
    layers: int = 1  # temporal transformer layers / conv layers
    heads: int = 2  # attention heads (attention, transformer)
    max_frames: int = 64  # longest clip, frames (learned position embeddings)
    dropout: float = 0.0  # dropout inside the head


class TemporalHead(nn.Module):
    """``[B, T, in_dim]`` frame features -> ``[B, out_dim]`` (class logits, or an embedding)."""

    def __init__(self, in_dim: int, out_dim: int, cfg: HeadConfig) -> None:
        super().__init__()
        if cfg.kind not in KINDS:
            raise ConfigError(f"head.kind {cfg.kind!r} is not one of {list(KINDS)}")
        if cfg.width % cfg.heads:
            raise ConfigError(f"head.width {cfg.width} is not a multiple of head.heads {cfg.heads}")
        self.kind, self.max_frames = cfg.kind, cfg.max_frames
        if cfg.kind == "linear":
            self.norm = nn.LayerNorm(in_dim, elementwise_affine=False)
            self.out = nn.Linear(in_dim, out_dim)
            return
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, cfg.width)
        if cfg.kind != "mean":
            self.pos = nn.Parameter(torch.randn(1, cfg.max_frames, cfg.width) * 0.02)
        if cfg.kind == "attention":
            self.query = nn.Parameter(torch.randn(1, 1, cfg.width) * 0.02)
            self.attn = nn.MultiheadAttention(cfg.width, cfg.heads, dropout=cfg.dropout, batch_first=True)
        elif cfg.kind == "transformer":
            layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, 2 * cfg.width, cfg.dropout, batch_first=True,
                                               norm_first=True, activation="gelu")
            self.temporal = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        elif cfg.kind == "conv":
            self.temporal = nn.ModuleList(
                nn.Sequential(nn.Conv1d(cfg.width, cfg.width, 3, padding=1), nn.GELU()) for _ in range(cfg.layers))
        self.out = nn.Sequential(nn.LayerNorm(cfg.width), nn.Dropout(cfg.dropout), nn.Linear(cfg.width, out_dim))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, in_dim]`` -> ``[B, width]`` clip features (``[B, in_dim]`` for ``linear``)."""
        t = x.shape[1]
        if t > self.max_frames:
            raise ConfigError(f"clip has {t} frames; the head was built for at most {self.max_frames}")
        if self.kind == "linear":
            return self.norm(x.mean(1))
        h = self.proj(self.norm(x))
        if self.kind == "mean":
            return h.mean(1)
        h = h + self.pos[:, :t]
        if self.kind == "attention":
            return self.attn(self.query.expand(len(h), -1, -1), h, h, need_weights=False)[0][:, 0]
        if self.kind == "transformer":
            return self.temporal(h).mean(1)
        for conv in self.temporal:
            h = h + conv(h.transpose(1, 2)).transpose(1, 2)
        return h.mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.pool(x))


class VideoHead(nn.Module):
    """Base of task heads whose ``forward`` is their video-only output ``video(seq)``."""

    def video(self, seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.video(seq)
