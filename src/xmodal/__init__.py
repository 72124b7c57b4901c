"""xmodal: cross-modal transfer learning on CLIP-family backbones."""

__version__ = "0.1.0"
