"""Decode limits: headers are checked before pixels or samples are allocated, and cut or non-finite
media are reported instead of decoding to a silently wrong sample."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from xmodal.errors import ConfigError, DataError
from xmodal.modalities import MODALITIES, AudioSpec, ImageSpec, VideoSpec
from xmodal.modalities.audio import load_waveform, wav_declared_frames
from xmodal.modalities.base import DecodeLimits, decode_limits, set_decode_limits
from xmodal.modalities.image import preprocess_image

from fuzz.corpus import bomb_png, faststart_mp4

IMAGE, VIDEO, AUDIO = MODALITIES.get("image"), MODALITIES.get("video"), MODALITIES.get("audio")


@pytest.fixture
def limits():
    """Restores the decode limits a test changes."""
    before = decode_limits()
    yield
    set_decode_limits(before)


def test_bomb_png_is_refused_from_its_header(tmp_path) -> None:
    path = bomb_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 1000
    with pytest.raises(DataError, match=r"bomb.png: picture too elongated \(1 x 200000 pixels"):
        IMAGE.load(path, ImageSpec())
    with pytest.raises(DataError, match="too elongated"):
        preprocess_image(Image.new("L", (300, 2)), ImageSpec(size=8))


def test_pixel_limit_is_configurable(tmp_path, limits) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    assert IMAGE.load(tmp_path / "a.png", ImageSpec(size=8)).shape == (3, 8, 8)
    set_decode_limits(max_pixels=1000)
    with pytest.raises(DataError, match=r"a.png: picture too large \(40 x 30 pixels; the limit is 1000"):
        IMAGE.load(tmp_path / "a.png", ImageSpec(size=8))
    with pytest.raises(ConfigError, match="max_pixels"):
        DecodeLimits(max_pixels=0)


def test_decompression_bomb_error_is_a_data_error(tmp_path, monkeypatch) -> None:
    Image.new("L", (64, 64)).save(tmp_path / "b.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's own guard (twice this raises)
    with pytest.raises(DataError, match="b.png: image too large"):
        IMAGE.load(tmp_path / "b.png", ImageSpec(size=8))


def test_nan_float_tiff_is_reported(tmp_path) -> None:
    arr = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    arr[2, 3] = np.nan
    Image.fromarray(arr, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(DataError, match="nan.tif: image contains NaN or infinite"):
        IMAGE.load(tmp_path / "nan.tif", ImageSpec(size=8))
    arr[2, 3] = 0.5
    Image.fromarray(arr, mode="F").save(tmp_path / "ok.tif")
    assert torch.isfinite(IMAGE.load(tmp_path / "ok.tif", ImageSpec(size=8))).all()


def test_tail_truncated_mp4_is_reported(tmp_path) -> None:
    full = faststart_mp4(tmp_path / "full.mp4", frames=16)
    assert VIDEO.load(full, VideoSpec(image=ImageSpec(size=8), num_frames=4)).shape == (4, 3, 8, 8)
    data = full.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(DataError, match=r"cut.mp4: truncated .*of the 16 frames"):
        VIDEO.load(tmp_path / "cut.mp4", VideoSpec(image=ImageSpec(size=8), num_frames=4))


def test_video_frame_size_and_count_limits(tmp_path, limits) -> None:
    full = faststart_mp4(tmp_path / "v.mp4", frames=16)
    set_decode_limits(max_pixels=100)
    with pytest.raises(DataError, match="v.mp4: picture too large"):
        VIDEO.load(full, VideoSpec(image=ImageSpec(size=8), num_frames=4))
    set_decode_limits(DecodeLimits(max_frames=10))
    with pytest.raises(DataError, match="v.mp4: video too long"):
        VIDEO.load(full, VideoSpec(image=ImageSpec(size=8), num_frames=4))


def test_truncated_wav_is_reported(tmp_path) -> None:
    x = np.random.default_rng(0).normal(0, 0.1, (8000, 2))
    sf.write(tmp_path / "a.wav", x, 8000, subtype="PCM_16")
    assert wav_declared_frames(tmp_path / "a.wav") == 8000
    data = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.wav: truncated audio: the header declares 8000 frames"):
        AUDIO.load(tmp_path / "cut.wav", AudioSpec(sample_rate=8000))
    assert wav_declared_frames(tmp_path / "cut.wav") == 8000 and wav_declared_frames(data[:0] or __file__) is None


def test_long_audio_reads_only_the_clip(tmp_path, limits) -> None:
    rate = 22050
    t = np.arange(rate * 20) / rate
    sf.write(tmp_path / "long.wav", 0.3 * np.sin(2 * np.pi * 440 * t), rate, subtype="FLOAT")
    sf.write(tmp_path / "head.wav", 0.3 * np.sin(2 * np.pi * 440 * t[: rate * 2]), rate, subtype="FLOAT")
    spec = AudioSpec(sample_rate=16000, max_seconds=1.0)
    cut = load_waveform(tmp_path / "long.wav", 16000, max_seconds=1.0)
    assert 16000 <= cut.size < 16000 * 1.2  # one second plus the resampling margin, not twenty
    assert torch.allclose(AUDIO.load(tmp_path / "long.wav", spec), AUDIO.load(tmp_path / "head.wav", spec), atol=1e-4)
    set_decode_limits(max_seconds=10.0)
    with pytest.raises(DataError, match="long.wav: audio too long"):
        AUDIO.load(tmp_path / "long.wav", spec)


def test_stills_decode_one_frame_within_the_limits(tmp_path, limits) -> None:
    clip = faststart_mp4(tmp_path / "v.mp4", frames=16)
    first = VIDEO.still(clip)
    assert first.size == (32, 32) and first.mode == "RGB"
    with pytest.raises(DataError, match="bomb.png: picture too elongated"):
        IMAGE.still(bomb_png(tmp_path / "bomb.png"))
    set_decode_limits(max_pixels=100)
    with pytest.raises(DataError, match="v.mp4: picture too large"):
        VIDEO.still(clip)
