"""A 1-D CNN encoder for multichannel time series (the ``series`` modality)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xmodal.config import check_ranges
from xmodal.encoders.base import ENCODERS, Builtin
from xmodal.encoders.vision import Blockless
from xmodal.errors import ConfigError


@dataclass
class SeriesCNNConfig:
    """A 1-D CNN over multichannel time series (the `series` modality)."""

    width: int = 32  # channels of the first stage (doubled per stage up to 4x)
    depth: int = 3  # conv stages, each halving the time steps
    kernel: int = 5  # temporal kernel size

    def __post_init__(self) -> None:
        check_ranges(self, {"width": (1, 8192), "depth": (1, 64), "kernel": (1, 1025)})


class SeriesCNN(Blockless, nn.Module):
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




ENCODERS.register("series_cnn", Builtin(SeriesCNNConfig, "series", lambda cfg, spec: SeriesCNN(cfg, spec.channels)))
