"""Backbones: CLIP-family towers mapping each modality into one L2-normalised shared space."""

from xmodal.backbones.base import BACKBONES, Backbone, Encoder, XModel
from xmodal.backbones import bound, hf_clip, lit  # noqa: F401,E402  (registration)

__all__ = ["BACKBONES", "Backbone", "Encoder", "XModel"]
