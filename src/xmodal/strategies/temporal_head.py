"""``temporal_head``: post-network tuning, a head over the sequence of frozen frame features.

The backbone is frozen; a small head models time over its per-frame features: mean pooling,
attention pooling, a temporal transformer (CLIP4Clip's seqTransf: Luo et al., "CLIP4Clip: An Empirical
Study of CLIP for End to End Video Clip Retrieval", Neurocomputing 2022) or temporal convolutions.
The same head sits on top of every strategy that modifies the backbone, so they compare fairly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from torch import nn

from xmodal.strategies.base import STRATEGIES, VideoClassifier, freeze
from xmodal.strategies.heads import HeadConfig, TemporalHead


@dataclass
class TemporalHeadConfig:
    head: HeadConfig = field(default_factory=HeadConfig)  # the temporal head over frame features


def head_classifier(model: Any, classes: Sequence[str], name: str, cfg: Any, frozen: bool,
                    extra: dict[str, nn.Module] | None = None) -> VideoClassifier:
    """A VideoClassifier: frozen ``model`` + ``TemporalHead(cfg.head)`` over its frame trunk features
    (+ ``extra`` modules the strategy injects); used by every modified-feature strategy."""
    freeze(model)
    head = TemporalHead(model.tower("image").width, len(classes), cfg.head)
    return VideoClassifier(model, classes, name, cfg, {"head": head, **(extra or {})}, frozen=frozen)


class TemporalHeadStrategy:
    config_cls = TemporalHeadConfig
    frozen = True
    default_lr = None  # the engine's rate
    backbone_lr_scale = 1.0  # unfreezes no base weight
    paper = "Luo et al., CLIP4Clip (seqTransf), Neurocomputing 2022"

    def apply(self, model: Any, classes: Sequence[str], cfg: TemporalHeadConfig) -> VideoClassifier:
        return head_classifier(model, classes, "temporal_head", cfg, frozen=True)


STRATEGIES.register("temporal_head", TemporalHeadStrategy())
