"""``distill``: a compact student matches the frozen image-language teacher, for cheap inference.

Knowledge distillation (Hinton et al., "Distilling the Knowledge in a Neural Network", 2015) of the
teacher's per-frame embeddings (feature matching, as in CLIP-KD: Yang et al., CVPR 2024) plus the
task's loss. The teacher stays frozen and its frame embeddings are cached; the student (a tiny ConvNet
per frame) and the task head are all that runs at inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xmodal.backbones.base import per_frame
from xmodal.encoders.vision import ConvNet, VisionConfig
from xmodal.strategies.base import STRATEGIES, VideoModel, frame_embeddings, freeze
from xmodal.tasks.heads import HeadConfig


@dataclass
class DistillConfig:
    width: int = 8  # student ConvNet base width
    depth: int = 2  # student ConvNet stages
    match_weight: float = 1.0  # weight of the embedding-matching loss (1 - cosine) next to the task's loss
    head: HeadConfig = field(default_factory=HeadConfig)  # temporal head over the student's frame features


class Student(nn.Module):
    """Tiny per-frame ConvNet and a projection into the teacher's space."""

    def __init__(self, cfg: DistillConfig, image_size: int, embed_dim: int) -> None:
        super().__init__()
        self.net = ConvNet(VisionConfig(arch="convnet", width=cfg.width, depth=cfg.depth, image_size=image_size))
        self.proj = nn.Linear(self.net.out_dim, embed_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> ``[B, T, width]`` per-frame student features."""
        b, t = pixels.shape[:2]
        return self.net(pixels.flatten(0, 1)).view(b, t, -1)


def teacher_and_pixels(vm: VideoModel, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """What is cached per clip: the frozen teacher's frame embeddings, and the frames the student reads."""
    return {"teacher": frame_embeddings(vm, pixels), "pixel_values": pixels}


def student_frames(vm: VideoModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return vm.added["student"](inputs["pixel_values"])


def student_in_space(vm: VideoModel, seq: torch.Tensor) -> torch.Tensor:
    """The student's frames projected into the teacher's (the shared) space."""
    return nn.functional.normalize(vm.added["student"].proj(seq), dim=-1)


def match_loss(weight: float):
    """The auxiliary loss ``weight * (1 - cos)`` between the student's projected frames and the teacher's."""

    def loss(vm: VideoModel, inputs: dict[str, torch.Tensor], seq: torch.Tensor) -> dict[str, torch.Tensor]:
        proj = vm.added["student"].proj(seq)
        match = 1 - nn.functional.cosine_similarity(proj, inputs["teacher"], dim=-1).mean()
        return {"loss": weight * match, "match": match.detach()}

    return loss


class Distill:
    config_cls = DistillConfig
    frozen = True
    default_lr = None  # the engine's rate
    backbone_lr_scale = 1.0  # unfreezes no base weight
    paper = "Hinton et al., Distilling the Knowledge in a Neural Network, 2015 (feature matching: CLIP-KD, CVPR 2024)"

    def apply(self, model: Any, cfg: DistillConfig) -> VideoModel:
        freeze(model)
        student = Student(cfg, model.spec("image").size, model.embed_dim)
        vm = VideoModel(model, "distill", cfg, {"student": student}, frozen=True, seq_width=student.net.out_dim,
                        head_config=cfg.head)
        vm.cache, vm.neck, vm.aux_loss, vm.backbone_at_inference = teacher_and_pixels, student_frames, match_loss(cfg.match_weight), False
        vm.frame_embed = student_in_space
        return vm


STRATEGIES.register("distill", Distill())
