"""Videos (PyAV): decode a container, sample frames, preprocess each frame like an image.

``load(path, spec)`` gives ``[T, 3, H, W]`` with ``T = spec.num_frames``; ``collate`` stacks them
into ``{"pixel_values": [B, T, 3, H, W]}``. :func:`write_video` writes an H.264 MP4 (used by the
synthetic world generator and the tests); :func:`read_frames` decodes every frame in order.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

import av
import numpy as np
import torch
from PIL import Image

from xmodal.errors import ConfigError, DataError
from xmodal.modalities.base import (MODALITIES, DecodeLimits, VideoSpec, check_file_size, check_picture,
                                   decode_limits)
from xmodal.modalities.image import check_file, preprocess_image

EXTENSIONS = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v")
SAMPLINGS = ("uniform", "segment")
_DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError, RuntimeError)


def _problem(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _open(path: Path) -> Any:
    """Open ``path`` as a container with at least one video stream (a DataError otherwise)."""
    try:
        container = av.open(str(path))
    except _DECODE_ERRORS as exc:
        raise DataError(path, f"unreadable or corrupt video ({_problem(exc)})") from None
    if not container.streams.video:
        container.close()
        raise DataError(path, "no video stream in the file")
    return container


def _check_stream(path: Path, container: Any, limits: DecodeLimits) -> Any:
    """The first video stream of ``container``, after checking its header against the decode limits
    (frame size, frame count, duration)."""
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise DataError(path, "corrupt video (its video stream has no decoder)")
    check_picture(path, stream.codec_context.width, stream.codec_context.height, limits)
    claimed, seconds = int(stream.frames or 0), float(container.duration or 0) / 1e6
    if claimed > limits.max_frames or seconds > limits.max_seconds:
        raise DataError(path, f"video too long ({claimed} frames, {seconds:.0f} s; the limits are "
                              f"{limits.max_frames} frames and {limits.max_seconds:g} s, see DecodeLimits)")
    return stream


def _count_packets(path: Path) -> int:
    """Number of non-empty video packets (one per frame for the usual codecs), after checking the
    stream's header against the decode limits; no decoding. A DataError when fewer packets are
    present than the container lists (a cut file)."""
    limits = decode_limits()
    check_file_size(path, limits)
    with _open(path) as container:
        stream = _check_stream(path, container, limits)
        claimed = int(stream.frames or 0)
        try:
            n = total = 0  # non-empty packets, all packets (empty ones: dropped frames, end of stream)
            for p in container.demux(stream):
                n, total = n + (1 if p.size else 0), total + 1
                if n > limits.max_frames:
                    raise DataError(path, f"video too long (over {limits.max_frames} frames, see DecodeLimits)")
        except _DECODE_ERRORS as exc:
            raise DataError(path, f"corrupt video ({_problem(exc)})") from None
    if claimed and total < claimed:
        raise DataError(path, f"truncated video: {n} of the {claimed} frames the container lists are present")
    return n


def first_frame(path: str | Path) -> Image.Image:
    """The first frame of ``path`` as an RGB image, decoding nothing after it (headers checked first)."""
    path = check_file(path)
    limits = decode_limits()
    check_file_size(path, limits)
    with _open(path) as container:
        stream = _check_stream(path, container, limits)
        try:
            for frame in container.decode(stream):
                return frame.to_image().convert("RGB")
        except _DECODE_ERRORS as exc:
            raise DataError(path, f"corrupt video, no frame decodes ({_problem(exc)})") from None
    raise DataError(path, "video stream has no decodable frames")


def _decode(path: Path, keep: Callable[[int], bool]) -> tuple[dict[int, Image.Image], int]:
    """Decode the first video stream in presentation order; returns the RGB images of the frame
    indices ``keep`` accepts and the number of frames decoded in total."""
    kept: dict[int, Image.Image] = {}
    n = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if keep(n):
                    kept[n] = frame.to_image()
                n += 1
        except _DECODE_ERRORS as exc:
            if n == 0:
                raise DataError(path, f"corrupt video, no frame decodes ({_problem(exc)})") from None
            # a damaged tail: keep the frames decoded before it
    if n == 0:
        raise DataError(path, "video stream has no decodable frames")
    return kept, n


def read_frames(path: str | Path) -> list[Image.Image]:
    """Every frame of the first video stream of ``path``, in order, as RGB ``PIL.Image``s (after the
    header and frame count are checked against the decode limits)."""
    path = check_file(path)
    _count_packets(path)
    kept, n = _decode(path, lambda i: True)
    return [kept[i] for i in range(n)]


def sample_indices(
    n: int, num_frames: int, sampling: str = "uniform", train: bool = False, generator: torch.Generator | None = None
) -> list[int]:
    """Frame indices (ascending, in ``[0, n)``) to keep from a clip of ``n`` frames.

    ``uniform``: ``num_frames`` indices evenly spread over ``[0, n-1]`` (rounded). ``segment``: the
    clip is cut into ``num_frames`` equal segments and the middle frame of each is kept, or a random
    frame of each when ``train`` (drawn from ``generator``, torch's global RNG if None). Clips with
    fewer than ``num_frames`` frames are repeat-padded by uniform sampling (indices repeat)."""
    if n < 1:
        raise ValueError(f"a clip needs at least one frame, got {n}")
    if num_frames < 1:
        raise ConfigError(f"num_frames must be positive, got {num_frames}")
    if sampling not in SAMPLINGS:
        raise ConfigError(f"unknown frame sampling {sampling!r}; known: {', '.join(SAMPLINGS)}")
    if sampling == "uniform" or n < num_frames:
        return [int(i) for i in np.linspace(0, n - 1, num_frames).round()]
    bounds = [j * n // num_frames for j in range(num_frames + 1)]  # every segment holds >= 1 frame
    segments = list(zip(bounds[:-1], bounds[1:], strict=True))
    if not train:
        return [start + (end - start) // 2 for start, end in segments]
    return [int(torch.randint(start, end, (1,), generator=generator)) for start, end in segments]


def load_clip(path: str | Path, spec: VideoSpec, generator: torch.Generator | None = None) -> list[Image.Image]:
    """The ``spec.num_frames`` sampled frames of ``path`` as RGB images, in clip order."""
    path = check_file(path)
    n = _count_packets(path)
    if n > 0:
        wanted = sample_indices(n, spec.num_frames, spec.sampling, spec.train, generator)
        need = set(wanted)
        kept, decoded = _decode(path, need.__contains__)
        if decoded == n:
            return [kept[i] for i in wanted]
        if decoded < n:
            raise DataError(path, f"truncated or damaged video: {decoded} of its {n} frames decode")
    # more frames than packets (an unusual codec): decode everything, then sample
    kept, decoded = _decode(path, lambda i: True)
    wanted = sample_indices(decoded, spec.num_frames, spec.sampling, spec.train, generator)
    return [kept[i] for i in wanted]


def _even_pad(frame: np.ndarray) -> np.ndarray:
    """Pad an ``H x W x 3`` frame by repeating its last row/column so both sides are even."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else frame


def rgb_to_yuv420p(video: np.ndarray) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` RGB (even H, W) -> uint8 ``[T, H * 3 // 2, W]`` planar Y, U, V (BT.601,
    limited range). Done here rather than by libswscale so that the encoder's input is exactly
    determined by the frames."""
    m = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], np.float32) / 255
    yuv = video.astype(np.float32) @ m.T + np.array([16.0, 128.0, 128.0], np.float32)
    t, h, w = video.shape[:3]
    chroma = yuv[..., 1:].reshape(t, h // 2, 2, w // 2, 2, 2).mean(axis=(2, 4))
    planes = [yuv[..., 0], chroma[..., 0].reshape(t, h // 4, w), chroma[..., 1].reshape(t, h // 4, w)]
    return np.clip(np.concatenate(planes, axis=1).round(), 0, 255).astype(np.uint8)


def write_video(path: str | Path, frames: Sequence[np.ndarray] | np.ndarray, fps: float = 8, crf: int = 18) -> Path:
    """Write ``frames`` (each ``H x W x 3`` uint8 RGB, all the same size) as an H.264 MP4 (libx264,
    yuv420p) at ``fps`` frames per second; odd sides are edge-padded to even. The file depends on
    the frames only (one encoder thread, no macroblock-tree rate control: with it, x264's output
    varied with the process's memory history), so generated data sets are byte-identical."""
    if len(frames) == 0:
        raise ValueError("write_video needs at least one frame")
    arrays = [np.ascontiguousarray(_even_pad(np.asarray(f))) for f in frames]
    shape = arrays[0].shape
    for k, a in enumerate(arrays):
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape != shape:
            raise ValueError(f"frame {k}: expected uint8 H x W x 3 like frame 0 {shape}, got {a.dtype} {a.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = shape[1], shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
        for frame in rgb_to_yuv420p(np.stack(arrays)):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="yuv420p")))
        container.mux(stream.encode(None))
    return path


class VideoModality:
    """Video clips read with PyAV; frames are sampled per ``VideoSpec`` and preprocessed as images."""

    name = "video"
    extensions = EXTENSIONS
    spec_cls = VideoSpec
    is_file = True
    frames_of = "image"
    visual = True

    def load(self, item: str | Path, spec: VideoSpec, generator: torch.Generator | None = None) -> torch.Tensor:
        """A video file -> float32 ``[num_frames, 3, size, size]``."""
        frames = load_clip(item, spec, generator)
        return torch.stack([preprocess_image(f, spec.image, item) for f in frames])

    def collate(self, items: list[torch.Tensor], spec: Any = None) -> dict[str, torch.Tensor]:
        """Stack ``[T, 3, H, W]`` clips into ``{"pixel_values": [B, T, 3, H, W]}``."""
        if not items:
            raise ValueError("cannot collate an empty list of videos")
        return {"pixel_values": torch.stack(items)}

    def duration(self, path: Path) -> float | None:
        """The container's duration (None when it does not say)."""
        with av.open(str(path)) as container:
            return float(container.duration) / 1e6 if container.duration else None

    def still(self, path: Path) -> Image.Image:
        """The first frame."""
        return first_frame(path)


MODALITIES.register("video", VideoModality())
