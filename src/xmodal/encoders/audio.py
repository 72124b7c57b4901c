"""Audio encoders over log-mel spectrograms: a VGG-style CNN and a compact spectrogram transformer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xmodal.config import check_ranges
from xmodal.encoders.base import ENCODERS, Builtin, standardize
from xmodal.encoders.vision import Block, Blockless, ClassTokenTransformer
from xmodal.errors import ConfigError


def _conv2d_stage(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU(),
                         nn.MaxPool2d(2, ceil_mode=True))


@dataclass
class AudioCNNConfig:
    """A VGG-style CNN over log-mel spectrograms."""

    width: int = 32  # channels of the first stage (doubled per stage up to 4x)
    depth: int = 3  # conv stages, each halving mel bands and frames
    dropout: float = 0.1  # dropout on the pooled features

    def __post_init__(self) -> None:
        check_ranges(self, {"width": (1, 8192), "depth": (1, 64), "dropout": (0.0, 0.99)})


class AudioCNN(Blockless, nn.Module):
    """A VGG-style CNN over log-mel spectrograms; tokens are the final frames (frequency pooled)."""

    input_key = "input_features"

    def __init__(self, cfg: AudioCNNConfig) -> None:
        super().__init__()
        widths = [cfg.width * 2 ** min(i, 2) for i in range(cfg.depth)]
        self.stages = nn.ModuleList(_conv2d_stage(a, b) for a, b in zip([1] + widths[:-1], widths))
        self.drop = nn.Dropout(cfg.dropout)
        self.out_dim = widths[-1]
        # channels-last convolutions, batch norms and pools: on a CPU a training step at batch 64 over 4-second
        # log-mels ran 1.6-2.2 s against 2.5-2.8 s at bf16, 3.9-5.1 against 4.7-5.4 s at fp32 (one thread; one
        # ad-hoc A/B, 3 rounds). Checkpoints store the weights contiguous, as ever.
        self.to(memory_format=torch.channels_last)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = standardize(x, (1, 2)).unsqueeze(1).contiguous(memory_format=torch.channels_last)  # [B, 1, mels, frames]
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x.mean(2).transpose(1, 2))  # [B, frames', C]
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_features(x)[-1]
        return self.drop(tokens.mean(1) + tokens.amax(1))


@dataclass
class AudioTransformerConfig:
    """A compact spectrogram transformer (in the spirit of AST, Gong et al. 2021)."""

    width: int = 64  # token width
    depth: int = 2  # transformer blocks
    heads: int = 4  # attention heads
    patch_frames: int = 4  # spectrogram frames per token (all mel bands of them)
    mlp_ratio: float = 2.0  # MLP hidden = mlp_ratio * width
    max_tokens: int = 512  # longest token sequence (positional table size)

    def __post_init__(self) -> None:
        check_ranges(self, {"width": (1, 8192), "depth": (1, 256), "heads": (1, 256), "patch_frames": (1, 4096),
                            "mlp_ratio": (0.01, 64), "max_tokens": (1, 65536)})


class AudioTransformer(ClassTokenTransformer):
    """A compact spectrogram transformer (in the spirit of AST, Gong et al. 2021): time patches of
    all mel bands, a class token, pre-norm blocks."""

    input_key = "input_features"

    def __init__(self, cfg: AudioTransformerConfig, n_mels: int) -> None:
        super().__init__()
        self.patch = cfg.patch_frames
        self.proj = nn.Linear(n_mels * cfg.patch_frames, cfg.width)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos = nn.Parameter(torch.randn(1, cfg.max_tokens + 1, cfg.width) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.out_dim = cfg.width

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, 1 + frames // patch_frames, width]`` (class token first) with positions."""
        x = standardize(x, (1, 2))
        b, m, t = x.shape
        t = t // self.patch * self.patch
        x = x[:, :, :t].reshape(b, m, t // self.patch, self.patch).permute(0, 2, 1, 3).flatten(2)
        x = torch.cat([self.cls.expand(b, -1, -1), self.proj(x)], 1)
        if x.shape[1] > self.pos.shape[1]:
            raise ConfigError(f"{x.shape[1] - 1} audio tokens exceed max_tokens {self.pos.shape[1] - 1}")
        return x + self.pos[:, : x.shape[1]]



ENCODERS.register("audio_cnn", Builtin(AudioCNNConfig, "audio", lambda cfg, spec: AudioCNN(cfg)))
ENCODERS.register("audio_transformer", Builtin(AudioTransformerConfig, "audio", lambda cfg, spec: AudioTransformer(cfg, spec.n_mels)))
