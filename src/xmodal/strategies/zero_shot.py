"""``zero_shot``: no training. The frame-averaged video embedding is compared with class-name prompts.

CLIP's zero-shot transfer (Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision", ICML 2021) applied to video by averaging frame embeddings, the baseline row of a
comparison. Nothing is trained; the class embeddings are a buffer computed from the text tower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.strategies.base import STRATEGIES, VideoClassifier, freeze


@dataclass
class ZeroShotConfig:
    templates: tuple[str, ...] = ("a video of something {}.", "an object {}.", "a shape {}.")  # prompts, {} = class


def frame_embeddings(clf: VideoClassifier, pixels: torch.Tensor) -> torch.Tensor:
    """``[B, T, D]`` L2-normalised embeddings of each frame in the shared space."""
    return clf.per_frame(clf.vision, pixels)


class PromptClassifier(nn.Module):
    """Cosine similarity of the mean frame embedding with fixed class embeddings, times a scale."""

    def __init__(self, classifier: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.register_buffer("weight", classifier.clone())
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        video = nn.functional.normalize(frames.mean(1), dim=-1)
        return self.scale * video @ self.weight.t()


class ZeroShot:
    config_cls = ZeroShotConfig
    frozen = True
    default_lr = None  # nothing trains
    backbone_lr_scale = 1.0  # unfreezes no base weight
    paper = "Radford et al., CLIP, ICML 2021"

    def apply(self, model: Any, classes: Sequence[str], cfg: ZeroShotConfig) -> VideoClassifier:
        from xmodal.tasks.zeroshot import build_zero_shot_classifier

        freeze(model)
        weight = build_zero_shot_classifier(model, list(classes), cfg.templates)
        scale = float(model.logit_scale.detach().exp().clamp(max=100))
        head = PromptClassifier(weight, scale)
        return VideoClassifier(model, classes, "zero_shot", cfg, {"head": head}, frozen=True, reader=frame_embeddings)


STRATEGIES.register("zero_shot", ZeroShot())
