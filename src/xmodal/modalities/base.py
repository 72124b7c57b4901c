"""The modality interface: decode a file (or a string) and preprocess it for a backbone.

Preprocessing settings come from the backbone (``model.spec(modality)``) so that the same file is
turned into exactly what the tower was trained on (image size, mean/std, sample rate, tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from xmodal.errors import ConfigError, DataError
from xmodal.registry import Registry


@dataclass(frozen=True)
class DecodeLimits:
    """What a decoder accepts, checked from file headers before any pixel or sample is allocated."""

    max_bytes: int = 4 << 30  # largest media file read, bytes (4 GiB)
    max_pixels: int = 64_000_000  # largest width x height of an image or a video frame
    max_aspect: float = 100.0  # longest side / shortest side (resizing a 1 x 200000 strip would explode)
    max_frames: int = 100_000  # most frames a video may hold
    max_seconds: float = 4 * 3600.0  # longest audio or video file, seconds

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_aspect", "max_frames", "max_seconds"):
            value = self.__dict__[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"decode limit {name} must be a positive number, got {value!r}")


_LIMITS = [DecodeLimits()]  # the limits in force (one slot, replaced by set_decode_limits)


def decode_limits() -> DecodeLimits:
    """The decode limits in force (``DecodeLimits()`` unless :func:`set_decode_limits` changed them)."""
    return _LIMITS[0]


def set_decode_limits(limits: DecodeLimits | None = None, **changes: Any) -> DecodeLimits:
    """Put ``limits`` (or the current ones with ``changes``, e.g. ``max_pixels=10**6``) in force; returns
    the limits that were in force before, so a caller can restore them."""
    before = _LIMITS[0]
    _LIMITS[0] = replace(limits or before, **changes)
    return before


def check_file_size(path: Path, limits: DecodeLimits | None = None) -> None:
    """A DataError if the file ``path`` is larger than ``max_bytes``."""
    limits = limits or decode_limits()
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise DataError(path, f"file too large ({size} bytes; the limit is {limits.max_bytes}, see DecodeLimits)")


def check_picture(source: str | Path, width: int, height: int, limits: DecodeLimits | None = None) -> None:
    """A DataError if a ``width x height`` picture is empty, above ``max_pixels`` or more elongated than
    ``max_aspect`` (checked from the header, before decoding)."""
    limits = limits or decode_limits()
    if width < 1 or height < 1:
        raise DataError(source, f"empty picture ({width} x {height} pixels)")
    if width * height > limits.max_pixels:
        raise DataError(source, f"picture too large ({width} x {height} pixels; the limit is {limits.max_pixels} "
                                f"pixels, see DecodeLimits)")
    if max(width, height) / min(width, height) > limits.max_aspect:
        raise DataError(source, f"picture too elongated ({width} x {height} pixels; the limit is "
                                f"{limits.max_aspect:g}:1, see DecodeLimits)")


@dataclass
class ImageSpec:
    size: int = 224  # side of the square input, pixels (resize shorter side + centre crop)
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)  # per-channel mean, RGB in [0,1]
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)  # per-channel std
    resample: str = "bicubic"  # Pillow resampling filter name


@dataclass
class VideoSpec:
    image: ImageSpec = field(default_factory=ImageSpec)  # how each frame is preprocessed
    num_frames: int = 8  # frames per clip after sampling
    sampling: str = "uniform"  # "uniform" (evenly over the clip) or "segment" (one per segment)
    train: bool = False  # segment sampling picks a random frame per segment when True


@dataclass
class AudioSpec:
    sample_rate: int = 16000  # rate the tower expects; inputs are resampled to it, Hz
    n_mels: int = 64  # mel bands of the log-mel features
    n_fft: int = 400  # FFT window, samples
    hop_length: int = 160  # hop between frames, samples
    max_seconds: float = 4.0  # clips are cut or zero-padded to this length, seconds


@dataclass
class TextSpec:
    tokenizer: Any = None  # a transformers tokenizer (callable on a list of strings)
    max_length: int = 64  # longest token sequence; longer texts are truncated
    padding: str = "longest"  # "longest" or "max_length" (SigLIP was trained with max_length)


@runtime_checkable
class Modality(Protocol):
    """One kind of input. ``load`` takes a path (a string for text) and returns one sample;
    ``collate`` stacks samples into the batch dict a tower's ``forward`` takes. Code that treats
    modalities differently asks these members, never a modality's name."""

    name: str  # registry name
    extensions: tuple[str, ...]  # file suffixes this modality reads (folders of class folders, indexing)
    spec_cls: type | None  # its preprocessing settings dataclass (what ``model.spec(name)`` returns)
    is_file: bool  # True: items are file paths (resolved against a data root); False: items are strings
    frames_of: str | None  # a sequence of another modality's items (video: frames of "image"), else None;
    # a model without a tower of its own encodes it frame by frame with that modality's tower
    visual: bool  # True: its files show a picture (``still`` gives one: search-page thumbnails)

    def load(self, item: Any, spec: Any) -> Any: ...

    def collate(self, items: list[Any], spec: Any) -> dict[str, torch.Tensor]: ...

    def duration(self, path: Path) -> float | None:
        """Length of the file ``path`` in seconds; None when it has no time axis or it is unknown."""
        ...

    def still(self, path: Path) -> Any:
        """An RGB ``PIL.Image`` showing the file ``path`` (an image, a video's first frame); None when
        the modality has no picture."""
        ...


MODALITIES: Registry[Modality] = Registry("modality")
