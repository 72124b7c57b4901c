"""Encoders for new modalities (``ENCODERS``), shared by binding and fusion: audio (CNN, spectrogram
transformer, transformers AST/Whisper), multichannel series, and the small ConvNet/ViT image trunks."""

from xmodal.encoders.base import ENCODERS, Builtin, Tower, build_encoder, make_spec
from xmodal.encoders import audio, hf_audio, image, series  # noqa: F401,E402  (registration)

__all__ = ["ENCODERS", "Builtin", "Tower", "build_encoder", "make_spec"]
