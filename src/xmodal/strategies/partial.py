"""``partial``: fine-tune part of the vision trunk: its last k blocks, or only norms and biases.

``last_k`` is the classic "fine-tune the top layers" baseline; ``bitfit`` trains only bias terms
and normalisation parameters (Ben Zaken et al., "BitFit: Simple Parameter-efficient Fine-tuning for
Transformer-based Masked Language-models", ACL 2022). The temporal head sits on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from xmodal.errors import ConfigError
from xmodal.strategies.base import STRATEGIES, VideoModel
from xmodal.tasks.heads import HeadConfig
from xmodal.strategies.hooks import vision_blocks
from xmodal.strategies.temporal_head import adapted

NORMS = (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm)


@dataclass
class PartialConfig:
    mode: str = "last_k"  # "last_k": the last k blocks (+ final norm); "bitfit": every bias and norm
    k: int = 1  # blocks to fine-tune in last_k mode
    head: HeadConfig = field(default_factory=HeadConfig)  # temporal head over the frame features


class Partial:
    config_cls = PartialConfig
    frozen = False
    default_lr = None  # the engine's rate, for the head
    backbone_lr_scale = 0.3  # the unfrozen backbone weights learn at 0.3 x the head's rate (1e-3 by default)
    paper = "last-k fine-tuning; BitFit: Ben Zaken et al., ACL 2022"

    def apply(self, model: Any, cfg: PartialConfig) -> VideoModel:
        if cfg.mode not in ("last_k", "bitfit"):
            raise ConfigError(f"partial.mode {cfg.mode!r} is not 'last_k' or 'bitfit'")
        vm = adapted(model, "partial", cfg, frozen=False)
        if cfg.mode == "last_k":
            blocks = vision_blocks(vm.vision, "partial (last_k)")
            if not 1 <= cfg.k <= len(blocks):
                raise ConfigError(f"partial.k must be in 1..{len(blocks)} (blocks of this tower), got {cfg.k}")
            for module in [*blocks[-cfg.k:], *vm.vision.final_parts()]:
                module.requires_grad_(True)
            return vm
        for module in vm.vision.trunk_module.modules():
            for name, p in module.named_parameters(recurse=False):
                p.requires_grad_(name == "bias" or isinstance(module, NORMS))
        return vm


STRATEGIES.register("partial", Partial())
