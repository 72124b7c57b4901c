"""``full``: fine-tune the whole vision trunk, with the temporal head on top.

End-to-end fine-tuning of a CLIP image encoder on video (e.g. ViFi-CLIP: Rasheed et al., "Fine-tuned
CLIP Models are Efficient Video Learners", CVPR 2023); the reference every parameter-efficient
strategy is measured against (parameter ratio = strategy trainable / full trainable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xmodal.engine.recompute import checkpoint_activations
from xmodal.strategies.base import STRATEGIES, VideoModel
from xmodal.tasks.heads import HeadConfig
from xmodal.strategies.temporal_head import adapted


@dataclass
class FullConfig:
    head: HeadConfig = field(default_factory=HeadConfig)  # temporal head over the frame features
    checkpoint_activations: bool = False  # recompute each trunk block's activations in the backward pass instead
    # of keeping them (torch.utils.checkpoint): the same gradients, less memory, ~1/3 more compute


class Full:
    config_cls = FullConfig
    frozen = False
    default_lr = None  # the engine's rate, for the head
    backbone_lr_scale = 0.1  # the unfrozen backbone learns at 0.1 x the head's rate (3e-4 by default)
    paper = "Rasheed et al., ViFi-CLIP: Fine-tuned CLIP Models are Efficient Video Learners, CVPR 2023"

    def apply(self, model: Any, cfg: FullConfig) -> VideoModel:
        vm = adapted(model, "full", cfg, frozen=False)
        vm.vision.trunk_module.requires_grad_(True)
        if cfg.checkpoint_activations:
            checkpoint_activations(vm.vision.blocks())
        return vm


STRATEGIES.register("full", Full())
