"""The LiT vision trunks (``encoders/vision.py``) as an encoder, for fusion image branches."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from xmodal.encoders.base import ENCODERS, Builtin
from xmodal.encoders.vision import VisionConfig, build_vision


class ImageNet(nn.Module):
    """The LiT vision trunk (``encoders/vision.py``) as an encoder, for fusion image branches."""

    input_key = "pixel_values"

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.body = build_vision(cfg)
        self.out_dim = self.body.out_dim

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def transformer_blocks(self) -> list[nn.Module]:
        return self.body.transformer_blocks()

    def final_parts(self) -> list[nn.Module]:
        return self.body.final_parts()

    def sublayers(self, block: nn.Module) -> tuple[nn.Module, nn.Module]:
        return self.body.sublayers(block)




def _image_factory(cfg: VisionConfig, spec: Any) -> nn.Module:
    if spec.size != cfg.image_size:
        cfg = dataclasses.replace(cfg, image_size=spec.size)
    return ImageNet(cfg)


ENCODERS.register("image_convnet", Builtin(VisionConfig, "image", _image_factory))
