"""``full``: fine-tune the whole vision trunk, with the temporal head on top.

End-to-end fine-tuning of a CLIP image encoder on video (e.g. ViFi-CLIP: Rasheed et al., "Fine-tuned
CLIP Models are Efficient Video Learners", CVPR 2023); the reference every parameter-efficient
strategy is measured against (parameter ratio = strategy trainable / full trainable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from xmodal.strategies.base import STRATEGIES, VideoClassifier
from xmodal.strategies.heads import HeadConfig
from xmodal.strategies.temporal_head import head_classifier


@dataclass
class FullConfig:
    head: HeadConfig = field(default_factory=HeadConfig)  # temporal head over the frame features


class Full:
    config_cls = FullConfig
    frozen = False
    default_lr = None  # the engine's rate, for the head
    backbone_lr_scale = 0.1  # the unfrozen backbone learns at 0.1 x the head's rate (3e-4 by default)
    paper = "Rasheed et al., ViFi-CLIP: Fine-tuned CLIP Models are Efficient Video Learners, CVPR 2023"

    def apply(self, model: Any, classes: Sequence[str], cfg: FullConfig) -> VideoClassifier:
        clf = head_classifier(model, classes, "full", cfg, frozen=False)
        clf.vision.trunk_module.requires_grad_(True)
        return clf


STRATEGIES.register("full", Full())
