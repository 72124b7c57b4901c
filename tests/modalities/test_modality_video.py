"""Video decoding with real MP4 files written by write_video: frame count, order, sampling, errors."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest
import torch

from xmodal.errors import DataError
from xmodal.modalities import MODALITIES, ImageSpec, VideoSpec
from xmodal.modalities.video import read_frames, sample_indices, write_video

VIDEO = MODALITIES.get("video")


def frame_ids(clip: torch.Tensor) -> list[int]:
    """Which grey frame (level 10 + 20 k) each ``[T, 3, H, W]`` frame of a PLAIN-spec clip is."""
    levels = clip.mean((1, 2, 3)) * 255
    return [int(round((float(v) - 10) / 20)) for v in levels]


@pytest.fixture
def clip12(tmp_path, make_grey_frames):
    """12 frames of 32 x 24 pixels; frame k is solid grey 10 + 20 k."""
    return write_video(tmp_path / "grey.mp4", make_grey_frames(12), fps=12)


def test_read_frames_count_and_order(clip12) -> None:
    frames = read_frames(clip12)
    assert len(frames) == 12 and frames[0].size == (32, 24)
    levels = [np.asarray(f, dtype=np.float64).mean() for f in frames]
    assert np.allclose(levels, [10 + 20 * k for k in range(12)], atol=3)


def test_uniform_sampling_picks_expected_frames(clip12, plain) -> None:
    clip = VIDEO.load(clip12, VideoSpec(image=plain, num_frames=4, sampling="uniform"))
    assert clip.shape == (4, 3, 16, 16)
    assert frame_ids(clip) == [0, 4, 7, 11]  # linspace(0, 11, 4) = 0, 3.67, 7.33, 11


def test_segment_sampling(clip12, plain) -> None:
    clip = VIDEO.load(clip12, VideoSpec(image=plain, num_frames=4, sampling="segment"))
    assert frame_ids(clip) == [1, 4, 7, 10]  # middles of [0,3) [3,6) [6,9) [9,12)
    spec = VideoSpec(image=plain, num_frames=4, sampling="segment", train=True)
    seen = set()
    for seed in range(6):
        ids = frame_ids(VIDEO.load(clip12, spec, generator=torch.Generator().manual_seed(seed)))
        assert all(3 * j <= k < 3 * j + 3 for j, k in enumerate(ids))
        seen.add(tuple(ids))
    assert len(seen) > 1
    a = VIDEO.load(clip12, spec, generator=torch.Generator().manual_seed(3))
    b = VIDEO.load(clip12, spec, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_short_clip_repeat_padded(tmp_path, plain, make_grey_frames) -> None:
    path = write_video(tmp_path / "short.mp4", make_grey_frames(3), fps=5)
    for sampling in ("uniform", "segment"):
        clip = VIDEO.load(path, VideoSpec(image=plain, num_frames=5, sampling=sampling))
        assert clip.shape == (5, 3, 16, 16)
        assert frame_ids(clip) == [0, 0, 1, 2, 2]


def test_sample_indices() -> None:
    assert sample_indices(1, 4) == [0, 0, 0, 0]
    assert sample_indices(10, 10, "segment") == list(range(10))
    assert sample_indices(100, 3, "segment") == [16, 49, 83]
    with pytest.raises(Exception, match="sampling"):
        sample_indices(10, 2, "random")


def test_odd_size_padded_and_collate(tmp_path) -> None:
    frames = [np.full((15, 21, 3), 100, np.uint8)] * 4
    path = write_video(tmp_path / "odd.mp4", frames, fps=4)
    assert read_frames(path)[0].size == (22, 16)
    spec = VideoSpec(image=ImageSpec(size=8), num_frames=2)
    batch = VIDEO.collate([VIDEO.load(path, spec)] * 3, spec)
    assert batch["pixel_values"].shape == (3, 2, 3, 8, 8)


def test_corrupt_missing_and_audio_only(tmp_path) -> None:
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="noise.mp4: unreadable or corrupt video"):
        VIDEO.load(bad, VideoSpec())
    with pytest.raises(DataError, match="gone.mp4: no such file"):
        VIDEO.load(tmp_path / "gone.mp4", VideoSpec())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.mp4"):
        read_frames(empty)
    sound = tmp_path / "sound.mp4"
    with av.open(str(sound), "w") as c:
        stream = c.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for _ in range(4):
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    with pytest.raises(DataError, match="sound.mp4: no video stream"):
        VIDEO.load(sound, VideoSpec())


def test_truncated_file(tmp_path, clip12, plain) -> None:
    data = clip12.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    try:  # a cut MP4 either fails cleanly or still yields a full clip of decodable frames
        clip = VIDEO.load(cut, VideoSpec(image=plain, num_frames=4))
    except DataError as exc:
        assert "cut.mp4" in str(exc)
    else:
        assert clip.shape == (4, 3, 16, 16)


def test_write_video_rejects_bad_frames(tmp_path) -> None:
    with pytest.raises(ValueError):
        write_video(tmp_path / "x.mp4", [], fps=4)
    with pytest.raises(ValueError, match="frame 1"):
        write_video(tmp_path / "x.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], fps=4)
    assert not os.path.exists(tmp_path / "x.mp4")
