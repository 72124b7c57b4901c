"""Backbones: CLIP-family towers mapping each modality into one L2-normalised shared space."""

from xmodal.backbones.base import BACKBONES, Backbone, Encoder, XModel
from xmodal.backbones import lit, hf_clip  # noqa: F401,E402  (registration)

__all__ = ["BACKBONES", "Backbone", "Encoder", "XModel"]
from xmodal.bind import backbone as _bound  # noqa: F401,E402  (registers "bound": base model + bound towers)
