"""Encoders for new modalities (``ENCODERS``): trunks that bind into the shared space or feed fusion.

Every encoder is a registered object with a ``config_cls`` (one dataclass, one comment per field),
the ``modality`` it reads and ``make(cfg, spec, assets) -> (net, spec)``: ``spec`` is a dict of the
modality's spec fields (AudioSpec, SeriesSpec, ImageSpec), completed from the encoder where it fixes
them (a transformers audio model fixes its mel bins). A net exposes ``input_key`` (the collated batch
key it reads), ``out_dim``, ``forward_features(x) -> [Tensor[B, N, out_dim]]`` (tokens after each
stage) and ``forward(x) -> Tensor[B, out_dim]`` (pooled). :class:`Tower` adds the linear head into the
shared space, with the ``trunk``/``head``/``head_layer`` split the feature cache relies on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xmodal.backbones.vision import Block, VisionConfig, build_vision
from xmodal.config import from_dict, to_dict
from xmodal.errors import ConfigError
from xmodal.modalities.base import AudioSpec, ImageSpec
from xmodal.modalities.series import SeriesSpec
from xmodal.registry import Registry

ENCODERS: Registry[Any] = Registry("encoder")
SPECS: dict[str, type] = {"audio": AudioSpec, "series": SeriesSpec, "image": ImageSpec}


def make_spec(modality: str, values: dict[str, Any]) -> Any:
    """The spec dataclass of ``modality`` from a dict of its fields (unknown keys are errors)."""
    if modality not in SPECS:
        raise ConfigError(f"no encoder spec for modality {modality!r}; known: {sorted(SPECS)}")
    return from_dict(SPECS[modality], dict(values), where=f"{modality} spec")


def standardize(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Zero mean, unit variance over ``dims`` per sample (robust to recording gain)."""
    return (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True) + 1e-5)


class Tower(nn.Module):
    """A trunk net and a linear head into the shared space (L2-normalised output)."""

    def __init__(self, modality: str, net: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.modality, self.net, self.embed_dim = modality, net, embed_dim
        self.width = net.out_dim
        self.head_layer = nn.Linear(net.out_dim, embed_dim)

    def trunk(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features ``[B, width]``."""
        return self.net(batch[self.net.input_key])

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.head_layer(features), dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.trunk(batch))

    def forward_features(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return self.net.forward_features(batch[self.net.input_key])

    def tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Last-stage tokens ``[B, N, width]`` (what intermediate fusion attends over)."""
        return self.forward_features(batch)[-1]


def _conv2d_stage(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU(),
                         nn.MaxPool2d(2, ceil_mode=True))


# ---------------------------------------------------------------- audio CNN
@dataclass
class AudioCNNConfig:
    width: int = 32  # channels of the first stage (doubled per stage up to 4x)
    depth: int = 3  # conv stages, each halving mel bands and frames
    dropout: float = 0.1  # dropout on the pooled features


class AudioCNN(nn.Module):
    """A VGG-style CNN over log-mel spectrograms; tokens are the final frames (frequency pooled)."""

    input_key = "input_features"

    def __init__(self, cfg: AudioCNNConfig) -> None:
        super().__init__()
        widths = [cfg.width * 2 ** min(i, 2) for i in range(cfg.depth)]
        self.stages = nn.ModuleList(_conv2d_stage(a, b) for a, b in zip([1] + widths[:-1], widths))
        self.drop = nn.Dropout(cfg.dropout)
        self.out_dim = widths[-1]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = standardize(x, (1, 2)).unsqueeze(1)  # [B, 1, mels, frames]
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x.mean(2).transpose(1, 2))  # [B, frames', C]
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_features(x)[-1]
        return self.drop(tokens.mean(1) + tokens.amax(1))


# ---------------------------------------------------------------- spectrogram transformer
@dataclass
class AudioTransformerConfig:
    width: int = 64  # token width
    depth: int = 2  # transformer blocks
    heads: int = 4  # attention heads
    patch_frames: int = 4  # spectrogram frames per token (all mel bands of them)
    mlp_ratio: float = 2.0  # MLP hidden = mlp_ratio * width
    max_tokens: int = 512  # longest token sequence (positional table size)


class AudioTransformer(nn.Module):
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

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = standardize(x, (1, 2))
        b, m, t = x.shape
        t = t // self.patch * self.patch
        x = x[:, :, :t].reshape(b, m, t // self.patch, self.patch).permute(0, 2, 1, 3).flatten(2)
        x = torch.cat([self.cls.expand(b, -1, -1), self.proj(x)], 1)
        if x.shape[1] > self.pos.shape[1]:
            raise ConfigError(f"{x.shape[1] - 1} audio tokens exceed max_tokens {self.pos.shape[1] - 1}")
        x = x + self.pos[:, : x.shape[1]]
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.forward_features(x)[-1][:, 0])


# ---------------------------------------------------------------- series CNN
@dataclass
class SeriesCNNConfig:
    width: int = 32  # channels of the first stage (doubled per stage up to 4x)
    depth: int = 3  # conv stages, each halving the time steps
    kernel: int = 5  # temporal kernel size


class SeriesCNN(nn.Module):
    """A 1-D CNN over multichannel time series ``[B, channels, length]``; tokens are time steps."""

    input_key = "series_values"

    def __init__(self, cfg: SeriesCNNConfig, channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise ConfigError("the series encoder needs SeriesSpec.channels >= 1 (its input width)")
        widths = [cfg.width * 2 ** min(i, 2) for i in range(cfg.depth)]
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv1d(a, b, cfg.kernel, stride=2, padding=cfg.kernel // 2), nn.BatchNorm1d(b), nn.GELU())
            for a, b in zip([channels] + widths[:-1], widths))
        self.out_dim = widths[-1]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x.transpose(1, 2))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[-1].mean(1)


# ---------------------------------------------------------------- image ConvNet/ViT
class ImageNet(nn.Module):
    """The LiT vision trunk (``backbones/vision.py``) as an encoder, for fusion image branches."""

    input_key = "pixel_values"

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.body = build_vision(cfg)
        self.out_dim = self.body.out_dim

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Builtin:
    """A registered built-in encoder: config class, modality, and a net factory ``(cfg, spec)``."""

    def __init__(self, config_cls: type, modality: str, factory: Any) -> None:
        self.config_cls, self.modality, self.factory = config_cls, modality, factory

    def make(self, cfg: Any, spec: dict[str, Any], assets: Path | None = None) -> tuple[nn.Module, Any]:
        spec_obj = make_spec(self.modality, spec)
        return self.factory(cfg, spec_obj), spec_obj

    def save_assets(self, net: nn.Module, assets: Path) -> None:
        """Built-in nets are rebuilt from their config alone."""


def _image_factory(cfg: VisionConfig, spec: ImageSpec) -> nn.Module:
    if spec.size != cfg.image_size:
        cfg = dataclasses.replace(cfg, image_size=spec.size)
    return ImageNet(cfg)


ENCODERS.register("audio_cnn", _Builtin(AudioCNNConfig, "audio", lambda cfg, spec: AudioCNN(cfg)))
ENCODERS.register("audio_transformer", _Builtin(AudioTransformerConfig, "audio", lambda cfg, spec: AudioTransformer(cfg, spec.n_mels)))
ENCODERS.register("series_cnn", _Builtin(SeriesCNNConfig, "series", lambda cfg, spec: SeriesCNN(cfg, spec.channels)))
ENCODERS.register("image_convnet", _Builtin(VisionConfig, "image", _image_factory))


def build_encoder(name: str, config: dict[str, Any] | None = None, spec: dict[str, Any] | None = None,
                  assets: Path | None = None) -> tuple[nn.Module, Any, dict[str, Any]]:
    """``(net, spec, record)`` of encoder ``name``; ``record`` is the JSON that rebuilds it."""
    enc = ENCODERS.get(name)
    cfg = from_dict(enc.config_cls, dict(config or {}), where=f"encoder {name}")
    net, spec_obj = enc.make(cfg, dict(spec or {}), assets)
    return net, spec_obj, {"encoder": name, "config": to_dict(cfg), "spec": to_dict(spec_obj)}


# registers the transformers audio encoder (imports transformers only when it is used)
from xmodal.bind import hf_audio  # noqa: E402,F401
