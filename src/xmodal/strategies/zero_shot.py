"""``zero_shot``: no training. Frame embeddings in the shared space go to the task's zero-shot head.

CLIP's zero-shot transfer (Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision", ICML 2021) applied to video, the baseline row of a comparison: the frozen image tower
embeds every frame and the task scores them without training (``classify``: the frame-averaged
embedding against class-name prompts; ``retrieve``: against caption embeddings; ``ground``: sliding
windows over frame-sentence similarities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xmodal.strategies.base import STRATEGIES, VideoModel, already_in_space, frame_embeddings, freeze


@dataclass
class ZeroShotConfig:
    """No settings: the prompts belong to the task (``classify``: ``templates``)."""


class ZeroShot:
    config_cls = ZeroShotConfig
    frozen = True
    default_lr = None  # nothing trains
    backbone_lr_scale = 1.0  # unfreezes no base weight
    paper = "Radford et al., CLIP, ICML 2021"

    def apply(self, model: Any, cfg: ZeroShotConfig) -> VideoModel:
        freeze(model)
        vm = VideoModel(model, "zero_shot", cfg, {}, frozen=True, reader=frame_embeddings, seq_width=model.embed_dim,
                        trains=False)
        vm.frame_embed = already_in_space
        return vm


STRATEGIES.register("zero_shot", ZeroShot())
