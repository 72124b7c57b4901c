"""Modalities: image (Pillow), video (PyAV), audio (soundfile), text (the backbone's tokenizer)."""

from xmodal.modalities.base import (
    MODALITIES,
    AudioSpec,
    DecodeLimits,
    ImageSpec,
    Modality,
    TextSpec,
    VideoSpec,
    decode_limits,
    set_decode_limits,
)
from xmodal.modalities import image, video, audio, text, series  # noqa: F401  (registration)
from xmodal.modalities import audio_augment  # noqa: F401  (registers the audio augmenter)
from xmodal.modalities.augment import AUGMENTERS


def modality_of(path: str) -> str:
    """The registered modality whose extensions include ``path``'s suffix (a DataError if none)."""
    from pathlib import Path

    from xmodal.errors import DataError

    suffix = Path(path).suffix.lower()
    for name in MODALITIES:
        if suffix in MODALITIES.get(name).extensions:
            return name
    raise DataError(path, f"unknown file type {suffix!r}")


__all__ = ["AUGMENTERS", "MODALITIES", "AudioSpec", "DecodeLimits", "ImageSpec", "Modality", "TextSpec", "VideoSpec",
           "decode_limits", "modality_of", "set_decode_limits"]
