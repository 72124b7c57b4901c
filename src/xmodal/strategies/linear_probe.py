"""``linear_probe``: a linear classifier on frame-averaged frozen features.

The linear-probe evaluation of CLIP (Radford et al., ICML 2021): the backbone is frozen and a
logistic-regression layer is trained on its pooled features, here averaged over the frames of a
clip. Averaging is blind to frame order, so a clip and its time-reversed twin look the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.strategies.base import STRATEGIES, VideoClassifier, freeze


@dataclass
class LinearProbeConfig:
    normalize: bool = True  # LayerNorm (no affine) on the averaged features before the linear layer


class FrameAverageLinear(nn.Module):
    def __init__(self, width: int, num_classes: int, normalize: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False) if normalize else nn.Identity()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(frames.mean(1)))


class LinearProbe:
    config_cls = LinearProbeConfig
    frozen = True
    default_lr = None  # the engine's rate
    backbone_lr_scale = 1.0  # unfreezes no base weight
    paper = "Radford et al., CLIP (linear probe), ICML 2021"

    def apply(self, model: Any, classes: Sequence[str], cfg: LinearProbeConfig) -> VideoClassifier:
        freeze(model)
        head = FrameAverageLinear(model.tower("image").width, len(classes), cfg.normalize)
        return VideoClassifier(model, classes, "linear_probe", cfg, {"head": head}, frozen=True)


STRATEGIES.register("linear_probe", LinearProbe())
