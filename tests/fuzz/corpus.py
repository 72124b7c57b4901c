"""Builders of the hostile-input corpus: every file is generated in a folder the caller gives (tests write
it under their tmp folder), so nothing larger than this source is committed.

``CASES`` lists every input: its file name, its kind (image, video, audio, text, manifest, model,
index) and the builder that writes it. ``build(folder, name, good)`` writes one; ``good`` holds the
paths of valid inputs some builders start from (``model``: a checkpoint folder, ``index``: an index
folder, ``image``: an image that loads).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

Builder = Callable[[Path, dict[str, Path]], Path]


@dataclass(frozen=True)
class Case:
    name: str  # file (or folder) name of the input, unique in the corpus
    kind: str  # image, video, audio, text, manifest, model, index, config or out
    build: Builder  # writes the input as folder / name and returns its path
    runs: tuple[tuple[str, ...], ...] = ()  # argv templates run on it (media: MEDIA_RUNS of its kind)
    named: str = ""  # what the output must mention (default: the input's file name)
    ok: bool = False  # a strange but valid input: exit status 0 without a mention is fine


QUIET = ("--set", "fit.progress=false", "--set", "fit.verbose=false")
AUDIO_SPEC = "{sample_rate: 8000, n_mels: 16, n_fft: 128, hop_length: 64, max_seconds: 0.25}"
MEDIA_RUNS = {  # kind -> argv templates; @manifest: good rows plus one row naming the input (columns path,
    # label, caption, split, image, audio), @model / @index: a good checkpoint / index folder
    "image": (("zeroshot", "--model", "@model", "--data", "@manifest", "--on-error", "skip"),
              ("search", "@index", "--image", "@input")),
    "video": (("zeroshot", "--model", "@model", "--data", "@manifest", "--modality", "video", "--on-error", "skip"),
              ("search", "@index", "--video", "@input")),
    "audio": (("bind", "--model", "@model", "--train", "@manifest", "--out", "@out", "--epochs", "1", "--batch-size",
               "4", "--on-error", "skip", "--set", "align.fit.progress=false", "--set", "encoder_config={width: 8, depth: 2}",
               "--set", f"spec={AUDIO_SPEC}"),),
}


# ---------------------------------------------------------------- shared writers
def bomb_png(path: Path, width: int = 1, height: int = 200_000) -> Path:
    """A 1-bit PNG of ``width x height`` pixels that compresses to a few hundred bytes."""
    Image.new("1", (width, height)).save(path, optimize=True)
    return path


def png_with_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims ``width x height`` (8-bit grey) but whose data is one tiny row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 9)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def faststart_mp4(path: Path, frames: int = 16, size: int = 32) -> Path:
    """An H.264 MP4 with its index (moov) before the frames, so that cutting its tail keeps it openable
    (the case of a download cut short)."""
    import av

    from xmodal.modalities.video import rgb_to_yuv420p

    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"threads": "1"}
        for frame in rgb_to_yuv420p(video):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="yuv420p")))
        container.mux(stream.encode(None))
    return path


def good_image(path: Path, rgb: tuple[int, int, int] = (200, 40, 40)) -> Path:
    Image.fromarray(np.full((16, 16, 3), rgb, np.uint8)).save(path)
    return path


def good_wav(path: Path, seconds: float = 0.25, rate: int = 8000, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * 440 * t), rate, subtype=subtype)
    return path


def _bytes(data: bytes) -> Builder:
    def build(path: Path, good: dict[str, Path]) -> Path:
        path.write_bytes(data)
        return path

    return build


def _cut(make: Callable[[Path], Path], keep: float) -> Builder:
    """The file ``make`` writes, cut to its first ``keep`` fraction of bytes."""
    def build(path: Path, good: dict[str, Path]) -> Path:
        data = make(path).read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
        return path

    return build


# ---------------------------------------------------------------- images
def _float_tiff(value: float) -> Builder:
    def build(path: Path, good: dict[str, Path]) -> Path:
        arr = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
        arr[3, 4] = value
        Image.fromarray(arr, mode="F").save(path)
        return path

    return build


def _bad_crc(path: Path, good: dict[str, Path]) -> Path:
    data = bytearray(good_image(path).read_bytes())
    data[29] ^= 0xFF  # inside the IHDR CRC
    path.write_bytes(bytes(data))
    return path


def _folder(path: Path, good: dict[str, Path]) -> Path:
    path.mkdir()
    return path


def _wav_as(path: Path, good: dict[str, Path]) -> Path:
    return good_wav(path.with_suffix(".wav")).rename(path)


IMAGES = [
    Case("bomb_1x200000.png", "image", lambda p, g: bomb_png(p)),
    Case("bomb_200000x1.png", "image", lambda p, g: bomb_png(p, 200_000, 1)),
    Case("header_100000x100000.png", "image", lambda p, g: png_with_header(p, 100_000, 100_000)),
    Case("header_0x0.png", "image", lambda p, g: png_with_header(p, 0, 0)),
    Case("nan.tif", "image", _float_tiff(float("nan"))),
    Case("inf.tif", "image", _float_tiff(float("inf"))),
    Case("cut.jpg", "image", _cut(lambda p: (Image.new("RGB", (64, 64), (9, 9, 9)).save(p), p)[1], 0.3)),
    Case("cut.png", "image", _cut(lambda p: good_image(p), 0.5)),
    Case("garbage.png", "image", _bytes(bytes(np.random.default_rng(1).integers(0, 256, 600, dtype=np.uint8)))),
    Case("empty.png", "image", _bytes(b"")),
    Case("text.jpg", "image", _bytes(b"hello, I am not a picture\n")),
    Case("bad_crc.png", "image", _bad_crc),
    Case("sound.png", "image", _wav_as),
    Case("folder.png", "image", _folder),
]


# ---------------------------------------------------------------- videos
def _moov_last(path: Path) -> Path:
    from xmodal.modalities.video import write_video

    return write_video(path, [np.full((16, 16, 3), 10 * i, np.uint8) for i in range(8)], fps=8)


VIDEOS = [
    Case("tail_cut_faststart.mp4", "video", _cut(lambda p: faststart_mp4(p), 0.6)),
    Case("tail_cut_moov_last.mp4", "video", _cut(_moov_last, 0.7)),
    Case("head_only.mp4", "video", _cut(lambda p: faststart_mp4(p), 0.05)),
    Case("garbage.mp4", "video", _bytes(bytes(np.random.default_rng(2).integers(0, 256, 900, dtype=np.uint8)))),
    Case("empty.mp4", "video", _bytes(b"")),
    Case("text.mkv", "video", _bytes(b"not a video at all\n" * 10)),
    Case("picture.mp4", "video", lambda p, g: good_image(p.with_suffix(".png")).rename(p), ok=True),  # ffmpeg reads it
    Case("sound.webm", "video", _wav_as),
    Case("folder.mp4", "video", _folder),
]


# ---------------------------------------------------------------- audio
def _nan_wav(path: Path, good: dict[str, Path]) -> Path:
    import soundfile as sf

    x = np.zeros(2000, np.float32)
    x[100] = np.nan
    sf.write(str(path), x, 8000, subtype="FLOAT", format="WAV")
    return path


def _lying_header(path: Path, good: dict[str, Path]) -> Path:
    """A WAV whose data chunk claims 10 minutes of 96 kHz stereo but holds a quarter second."""
    good_wav(path, rate=8000)
    data = bytearray(path.read_bytes())
    pos = data.find(b"data")
    data[pos + 4 : pos + 8] = struct.pack("<I", 600 * 96000 * 4)
    path.write_bytes(bytes(data))
    return path


AUDIO = [
    Case("cut.wav", "audio", _cut(lambda p: good_wav(p), 0.5)),
    Case("lying_header.wav", "audio", _lying_header),
    Case("header_only.wav", "audio", _cut(lambda p: good_wav(p), 0.02)),
    Case("nan.wav", "audio", _nan_wav),
    Case("empty.wav", "audio", _bytes(b"")),
    Case("garbage.flac", "audio", _bytes(bytes(np.random.default_rng(3).integers(0, 256, 700, dtype=np.uint8)))),
    Case("cut.flac", "audio", _cut(lambda p: good_wav(p, seconds=1.0), 0.5)),
    Case("text.wav", "audio", _bytes(b"RIFF but not really\n")),
    Case("picture.wav", "audio", lambda p, g: good_image(p.with_suffix(".png")).rename(p)),
    Case("rate_1hz.wav", "audio", lambda p, g: good_wav(p, seconds=4000, rate=1)),
]



def _hostile_folder(path: Path, good: dict[str, Path]) -> Path:
    """A media folder (an ``xmodal index`` input) holding one good image and a few hostile files."""
    path.mkdir()
    good_image(path / "good.png")
    for case in (IMAGES[0], IMAGES[4], VIDEOS[0], AUDIO[0]):
        case.build(path / case.name, good)
    return path


FOLDERS = [Case("hostile_folder", "image", _hostile_folder, (("index", "@input", "--model", "@model", "--out", "@out",
                                                              "--no-progress"),), named="bomb_1x200000.png")]
MEDIA = IMAGES + VIDEOS + AUDIO + FOLDERS
