"""Backbones: CLIP-family towers mapping each modality into one L2-normalised shared space."""

from xmodal.backbones.base import BACKBONES, Backbone, Encoder, XModel

__all__ = ["BACKBONES", "Backbone", "Encoder", "XModel"]
