"""``side_network``: a light network beside the frozen backbone reads several of its layers.

After EVL (Lin et al., "Frozen CLIP Models are Efficient Video Learners", ECCV 2022): no gradient
enters the backbone; a side network reads all tokens of the last ``layers`` blocks of each frame,
projects each to a few channels, fuses the layers with learned weights and models time over the
flattened token maps with the task's temporal head. The intermediate features are cached, so training is as cheap as a head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xmodal.errors import ConfigError
from xmodal.strategies.base import STRATEGIES, VideoModel, freeze
from xmodal.tasks.heads import HeadConfig
from xmodal.strategies.hooks import vision_blocks


@dataclass
class SideNetworkConfig:
    layers: int = 0  # how many of the last blocks' outputs the side network reads; 0 = all
    width: int = 4  # width each token of each layer is projected to before fusion
    head: HeadConfig = field(default_factory=HeadConfig)  # temporal head over the fused features


def layer_tokens(last: int):
    """A reader: ``[B, T, L, N, W]``, every token (class token and patches, so *where* things are
    survives) of the ``last`` L blocks, per frame."""

    def read(vm: VideoModel, pixels: torch.Tensor) -> torch.Tensor:
        return vm.per_frame(lambda batch: torch.stack(vm.vision.forward_features(batch)[-last:], 1), pixels)

    return read


class SideNetwork(nn.Module):
    """Per-layer norm + token projection, softmax-weighted sum over layers, the token map flattened
    (keeping token positions): ``[B, T, L, N, W]`` -> ``[B, T, N * width]`` for the task's head."""

    def __init__(self, layers: int, in_dim: int, width: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(in_dim) for _ in range(layers))
        self.projs = nn.ModuleList(nn.Linear(in_dim, width) for _ in range(layers))
        self.mix = nn.Parameter(torch.zeros(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [proj(norm(x[:, :, i])) for i, (norm, proj) in enumerate(zip(self.norms, self.projs))]
        fused = (torch.stack(parts, 2) * self.mix.softmax(0)[:, None, None]).sum(2)  # [B, T, N, width]
        return nn.functional.gelu(fused).flatten(2)


def side_neck(vm: VideoModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    tokens = inputs["features"] if "features" in inputs else vm.reader(vm, inputs["pixel_values"])
    return vm.added["side"](tokens)


class SideNetworkStrategy:
    config_cls = SideNetworkConfig
    frozen = True
    default_lr = None  # the engine's rate
    backbone_lr_scale = 1.0  # unfreezes no base weight
    paper = "Lin et al., EVL: Frozen CLIP Models are Efficient Video Learners, ECCV 2022"

    def apply(self, model: Any, cfg: SideNetworkConfig) -> VideoModel:
        tower = model.tower("image")
        n = len(vision_blocks(tower, "side_network"))
        if not 0 <= cfg.layers <= n:
            raise ConfigError(f"side_network.layers must be in 0..{n} (blocks of this tower), got {cfg.layers}")
        freeze(model)
        size = model.spec("image").size
        with torch.no_grad():
            tokens = tower.forward_features({"pixel_values": torch.zeros(1, 3, size, size)})[-1].shape[1]
        net = SideNetwork(cfg.layers or n, tower.width, cfg.width)
        vm = VideoModel(model, "side_network", cfg, {"side": net}, frozen=True, reader=layer_tokens(cfg.layers or n),
                        seq_width=tokens * cfg.width, head_config=cfg.head)
        vm.neck = side_neck
        return vm


STRATEGIES.register("side_network", SideNetworkStrategy())
