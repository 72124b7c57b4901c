"""``linear_probe``: a linear layer on frame-averaged frozen features.

The linear-probe evaluation of CLIP (Radford et al., ICML 2021): the backbone is frozen and a
logistic-regression layer is trained on its pooled features, here averaged over the frames of a
clip (the task heads' ``linear`` pooling: mean, LayerNorm without affine parameters, one linear
layer). Averaging is blind to frame order, so a clip and its time-reversed twin look the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xmodal.strategies.base import STRATEGIES, VideoModel, freeze
from xmodal.tasks.heads import HeadConfig


@dataclass
class LinearProbeConfig:
    """No settings: the probe is one linear layer on the normalised frame average."""


class LinearProbe:
    config_cls = LinearProbeConfig
    frozen = True
    default_lr = None  # the engine's rate
    backbone_lr_scale = 1.0  # unfreezes no base weight
    paper = "Radford et al., CLIP (linear probe), ICML 2021"

    def apply(self, model: Any, cfg: LinearProbeConfig) -> VideoModel:
        freeze(model)
        return VideoModel(model, "linear_probe", cfg, {}, frozen=True, head_config=HeadConfig(kind="linear"))


STRATEGIES.register("linear_probe", LinearProbe())
