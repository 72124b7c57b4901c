"""Contrastive alignment of towers (CLIP / SigLIP losses, LiT locking, feature caching)."""

from xmodal.engine.losses import LOSSES, clip_loss, siglip_loss
from xmodal.alignment.train import AlignConfig, AlignResult, align

__all__ = ["LOSSES", "AlignConfig", "AlignResult", "align", "clip_loss", "siglip_loss"]
