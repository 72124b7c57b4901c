"""``temporal_head``: post-network tuning, a head over the sequence of frozen frame features.

The backbone is frozen; the task's head models time over its per-frame features: mean pooling,
attention pooling, a temporal transformer (CLIP4Clip's seqTransf: Luo et al., "CLIP4Clip: An Empirical
Study of CLIP for End to End Video Clip Retrieval", Neurocomputing 2022) or temporal convolutions.
The same head sits on top of every strategy that modifies the backbone, so they compare fairly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from xmodal.strategies.base import STRATEGIES, VideoModel, freeze
from xmodal.tasks.heads import HeadConfig


@dataclass
class TemporalHeadConfig:
    head: HeadConfig = field(default_factory=HeadConfig)  # the temporal head over frame features


def adapted(model: Any, name: str, cfg: Any, frozen: bool, added: dict[str, nn.Module] | None = None) -> VideoModel:
    """A VideoModel over the frozen ``model``'s frame trunk features with ``cfg.head`` pooling (+ the
    ``added`` modules a strategy injects); used by every strategy that keeps the trunk features."""
    freeze(model)
    return VideoModel(model, name, cfg, dict(added or {}), frozen=frozen, head_config=cfg.head)


class TemporalHeadStrategy:
    config_cls = TemporalHeadConfig
    frozen = True
    default_lr = None  # the engine's rate
    backbone_lr_scale = 1.0  # unfreezes no base weight
    paper = "Luo et al., CLIP4Clip (seqTransf), Neurocomputing 2022"

    def apply(self, model: Any, cfg: TemporalHeadConfig) -> VideoModel:
        return adapted(model, "temporal_head", cfg, frozen=True)


STRATEGIES.register("temporal_head", TemporalHeadStrategy())
