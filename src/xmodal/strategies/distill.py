"""``distill``: a compact student matches the frozen image-language teacher, for cheap inference.

Knowledge distillation (Hinton et al., "Distilling the Knowledge in a Neural Network", 2015) of the
teacher's per-frame embeddings (feature matching, as in CLIP-KD: Yang et al., CVPR 2024) plus the
labels. The teacher stays frozen and its frame embeddings are cached; the student (a tiny ConvNet
per frame + the temporal head) is all that runs at inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.backbones.base import per_frame
from xmodal.encoders.vision import ConvNet, VisionConfig
from xmodal.strategies.base import STRATEGIES, VideoClassifier, freeze
from xmodal.strategies.heads import HeadConfig, TemporalHead
from xmodal.strategies.zero_shot import frame_embeddings


@dataclass
class DistillConfig:
    width: int = 8  # student ConvNet base width
    depth: int = 2  # student ConvNet stages
    match_weight: float = 1.0  # weight of the embedding-matching loss (1 - cosine) next to cross-entropy
    head: HeadConfig = field(default_factory=HeadConfig)  # temporal head over the student's frame features


class Student(nn.Module):
    """Tiny per-frame ConvNet, a projection into the teacher's space, and a temporal head."""

    def __init__(self, cfg: DistillConfig, image_size: int, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.net = ConvNet(VisionConfig(arch="convnet", width=cfg.width, depth=cfg.depth, image_size=image_size))
        self.proj = nn.Linear(self.net.out_dim, embed_dim)
        self.head = TemporalHead(self.net.out_dim, num_classes, cfg.head)

    def frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, T, W]`` student features of each frame."""
        return per_frame(lambda batch: self.net(batch["pixel_values"]), {"pixel_values": pixels})


class DistillClassifier(VideoClassifier):
    """The student replaces the backbone at inference; the teacher only provides cached targets."""

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.added["student"].frames(pixels)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.added["student"].head(features)

    def cache_inputs(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"teacher": frame_embeddings(self, pixels), "pixel_values": pixels}

    def loss(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        student = self.added["student"]
        feats = student.frames(inputs["pixel_values"])
        ce = nn.functional.cross_entropy(student.head(feats), labels)
        match = 1 - nn.functional.cosine_similarity(student.proj(feats), inputs["teacher"], dim=-1).mean()
        return {"loss": ce + self.config.match_weight * match, "ce": ce.detach(), "match": match.detach()}

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        student = self.added["student"]
        return nn.functional.normalize(student.proj(student.frames(pixels)).mean(1), dim=-1)

    def inference_modules(self) -> list[nn.Module]:
        return [self.added]


class Distill:
    config_cls = DistillConfig
    frozen = True
    default_lr = None  # the engine's rate
    backbone_lr_scale = 1.0  # unfreezes no base weight
    paper = "Hinton et al., Distilling the Knowledge in a Neural Network, 2015 (feature matching: CLIP-KD, CVPR 2024)"

    def apply(self, model: Any, classes: Sequence[str], cfg: DistillConfig) -> VideoClassifier:
        freeze(model)
        size = model.spec("image").size
        student = Student(cfg, size, model.embed_dim, len(classes))
        return DistillClassifier(model, classes, "distill", cfg, {"student": student}, frozen=True)


STRATEGIES.register("distill", Distill())
