"""``extra``: fine-tuning with an extra model: a motion stream beside the adapted backbone.

The "extra models" family of image-to-video transfer feeds an auxiliary source into the adapted
image model. Here it is the cheapest motion source there is, RGB differences of neighbouring
sampled frames (the "RGB diff" stream of Temporal Segment Networks: Wang et al., ECCV 2016; the
two-stream idea: Simonyan & Zisserman, NeurIPS 2014): a small ConvNet encodes each frame's central
difference ``x[t+1] - x[t-1]`` and its features are concatenated with the frame features of the
inner strategy (``base``: any registered strategy that trains), before the task head. A single
frame cannot show which way something moves; a difference of frames can. The inner strategy's
modules and the motion encoder are what trains; the motion encoder's FLOPs and parameters are in
the run's efficiency figures like any other module's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xmodal.config import from_dict
from xmodal.encoders.vision import ConvNet, VisionConfig
from xmodal.errors import ConfigError
from xmodal.strategies.base import STRATEGIES, VideoModel


@dataclass
class ExtraConfig:
    base: str = "temporal_head"  # the strategy that adapts the backbone (any registered one that trains)
    base_options: dict = field(default_factory=dict)  # its config fields, e.g. {"head": {"kind": "conv"}}
    width: int = 16  # motion ConvNet base width (channels of its first stage)
    depth: int = 2  # motion ConvNet stages
    dim: int = 32  # width of the motion features joined to the frame features


def frame_differences(pixels: torch.Tensor) -> torch.Tensor:
    """Central differences over time ``x[t+1] - x[t-1]`` (one-sided at the ends) of ``[B, T, C, H, W]``."""
    if pixels.shape[1] < 2:
        return torch.zeros_like(pixels)
    nxt = torch.cat([pixels[:, 1:], pixels[:, -1:]], 1)
    prev = torch.cat([pixels[:, :1], pixels[:, :-1]], 1)
    return nxt - prev


class MotionStream(nn.Module):
    """Per-frame ConvNet over frame differences, projected to ``dim``: ``[B, T, 3, H, W] -> [B, T, dim]``."""

    def __init__(self, cfg: ExtraConfig, image_size: int) -> None:
        super().__init__()
        self.net = ConvNet(VisionConfig(arch="convnet", width=cfg.width, depth=cfg.depth, image_size=image_size))
        self.proj = nn.Linear(self.net.out_dim, cfg.dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b, t = pixels.shape[:2]
        diffs = frame_differences(pixels)
        return self.proj(self.net(diffs.flatten(0, 1))).view(b, t, -1)


class Extra:
    config_cls = ExtraConfig
    frozen = False  # decided by the inner strategy when applied (the model records it)
    default_lr = None
    backbone_lr_scale = 1.0
    paper = "motion stream of RGB differences: TSN (Wang et al., ECCV 2016), two-stream (Simonyan & Zisserman, NeurIPS 2014)"

    def apply(self, model: Any, cfg: ExtraConfig) -> VideoModel:
        if cfg.base == "extra":
            raise ConfigError("extra.base must be another strategy, not extra itself")
        inner = STRATEGIES.get(cfg.base)
        vm = inner.apply(model, from_dict(inner.config_cls, dict(cfg.base_options), where=f"extra.base_options ({cfg.base})"))
        if not vm.trains:
            raise ConfigError(f"extra.base {cfg.base!r} trains nothing; the motion stream needs a trainable head")
        vm.added["motion"] = MotionStream(cfg, model.spec("image").size)
        inner_neck, inner_cache = vm.neck, vm.cache

        def neck(m: VideoModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.cat([inner_neck(m, inputs), m.added["motion"](inputs["pixel_values"])], -1)

        def cache(m: VideoModel, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
            return {**inner_cache(m, pixels), "pixel_values": pixels}

        vm.neck, vm.cache, vm.seq_width = neck, cache, vm.seq_width + cfg.dim
        inner_embed, inner_aux, width = vm.frame_embed, vm.aux_loss, vm.seq_width - cfg.dim
        if inner_embed is not None:  # the inner strategy's part of the sequence still maps into the space
            vm.frame_embed = lambda m, seq: inner_embed(m, seq[..., :width])
        if inner_aux is not None:  # and still feeds its own auxiliary loss (distillation)
            vm.aux_loss = lambda m, inputs, seq: inner_aux(m, inputs, seq[..., :width])
        vm.strategy, vm.config = "extra", cfg
        return vm


STRATEGIES.register("extra", Extra())
