"""Audio (soundfile + a numpy polyphase resampler): decode, mix to mono, resample, log-mel features.

``load(path, spec)`` gives float32 ``[n_mels, frames]`` with ``frames = audio_frames(spec)`` (the
same for every clip: clips are cut or zero-padded to ``spec.max_seconds``); ``collate`` stacks them
into ``{"input_features": [B, n_mels, frames]}``.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from xmodal.errors import ConfigError, DataError
from xmodal.modalities.base import MODALITIES, AudioSpec, check_file_size, decode_limits
from xmodal.modalities.image import check_file
from xmodal.modalities.resample import resample_poly

EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
MIN_RATE, MAX_RATE = 1000, 384000  # plausible sample rates, Hz
MAX_FACTOR = 1000  # largest up/down factor of the polyphase resampler
LOG_FLOOR = 1e-10  # mel power floor before log10
SILENCE = float(np.log10(LOG_FLOOR))  # the log-mel value of silence (zero samples)
MARGIN_DIV = 10  # a cut read keeps rate // MARGIN_DIV extra frames (0.1 s), so resampling edges stay outside the clip


def resample_factors(rate: int, target: int) -> tuple[int, int]:
    """``(up, down)`` for ``resample_poly`` from ``rate`` to ``target`` Hz: the exact gcd-reduced
    ratio, or (when a factor exceeds MAX_FACTOR, e.g. 44056 -> 16000 Hz) the closest ratio with
    factors <= MAX_FACTOR if it is within 0.1 % (a ValueError otherwise)."""
    g = gcd(rate, target)
    up, down = target // g, rate // g
    if max(up, down) <= MAX_FACTOR:
        return up, down
    exact = Fraction(target, rate)
    if exact >= 1:
        inv = (1 / exact).limit_denominator(MAX_FACTOR)
        up, down = inv.denominator, inv.numerator
    else:
        approx = exact.limit_denominator(MAX_FACTOR)
        up, down = approx.numerator, approx.denominator
    if min(up, down) < 1 or abs(Fraction(up, down) - exact) > exact / 1000:
        raise ValueError(f"cannot resample {rate} Hz to {target} Hz with factors <= {MAX_FACTOR}")
    return up, down


def _check_target(rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ConfigError(f"audio spec sample_rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")


def _read(path: Path, seconds: float | None) -> tuple[np.ndarray, int]:
    """The first ``seconds`` (all when None) of ``path`` plus a resampling margin, ``[frames, channels]``
    float32, and the file's rate; only those frames are read. A DataError for an unreadable file, one
    longer than the decode limits allow, or a WAV whose header promises more frames than it holds."""
    limits = decode_limits()
    check_file_size(path, limits)
    try:
        with sf.SoundFile(str(path)) as f:
            rate, total = int(f.samplerate), int(f.frames)
            _check_header(path, rate, total, f.channels, limits.max_seconds)
            want = total if seconds is None else min(total, int(np.ceil(seconds * rate)) + rate // MARGIN_DIV)
            data = f.read(want, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(path, f"unreadable or corrupt audio ({first})") from None
    if data.shape[0] < want:
        raise DataError(path, f"truncated audio: {data.shape[0]} of the {want} frames read decode")
    declared = wav_declared_frames(path)
    if declared is not None and declared > total:
        raise DataError(path, f"truncated audio: the header declares {declared} frames, the file holds {total}")
    return data, rate


def _check_header(path: Path, rate: int, frames: int, channels: int, max_seconds: float) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise DataError(path, f"implausible sample rate {rate} Hz (expected {MIN_RATE}..{MAX_RATE} Hz)")
    if frames == 0 or channels == 0:
        raise DataError(path, f"zero-length audio (no samples at {rate} Hz)")
    if frames / rate > max_seconds:
        raise DataError(path, f"audio too long ({frames / rate:.0f} s; the limit is {max_seconds:g} s, see DecodeLimits)")


def wav_declared_frames(path: str | Path) -> int | None:
    """Frames the ``data`` chunk header of a RIFF/WAVE file declares (None for other files, or a
    streamed WAV whose header says 0 or 0xFFFFFFFF bytes); walks the chunk headers only."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        align = 0
        while len(chunk := f.read(8)) == 8:
            cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"fmt ":
                fmt = f.read(min(size, 16))
                align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else 0
                f.seek(size - len(fmt) + (size & 1), 1)
            elif cid == b"data":
                return size // align if align and size not in (0, 0xFFFFFFFF) else None
            else:
                f.seek(size + (size & 1), 1)
    return None


def load_waveform(path: str | Path, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Decode ``path`` to a mono float32 waveform at ``sample_rate`` Hz (``[n_samples]``, roughly in
    [-1, 1]): channels are averaged, other rates resampled with a polyphase filter. With
    ``max_seconds`` only that much (plus a short resampling margin) is read and resampled, so a long
    file costs no more memory than a short one. A DataError for a missing/unreadable/truncated file,
    no samples, NaN/inf samples, an implausible file sample rate or a file beyond the decode limits."""
    _check_target(sample_rate)
    path = check_file(path)
    data, rate = _read(path, max_seconds)
    if not np.isfinite(data).all():
        raise DataError(path, "audio contains NaN or infinite samples")
    mono = data.mean(axis=1, dtype=np.float64)
    del data
    if rate != sample_rate:
        try:
            up, down = resample_factors(rate, sample_rate)
        except ValueError as exc:
            raise DataError(path, str(exc)) from None
        mono = resample_poly(mono, up, down)
    return mono.astype(np.float32)


def audio_frames(spec: AudioSpec) -> int:
    """Frames of the log-mel features of one clip: ``max_seconds * sample_rate // hop_length``."""
    return _num_samples(spec) // spec.hop_length


def _num_samples(spec: AudioSpec) -> int:
    n = int(round(spec.max_seconds * spec.sample_rate))
    if spec.n_fft < 2 or spec.hop_length < 1 or spec.n_mels < 1:
        raise ConfigError(f"audio spec needs n_fft >= 2, hop_length >= 1, n_mels >= 1; got {spec}")
    if n < spec.n_fft or n // spec.hop_length < 1:
        raise ConfigError(f"audio spec max_seconds={spec.max_seconds} is shorter than one FFT window")
    return n


@lru_cache(maxsize=16)
def _mel_filters(n_fft: int, n_mels: int, sample_rate: int) -> np.ndarray:
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=1 + n_fft // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )


def log_mel(waveform: np.ndarray, spec: AudioSpec, whole: bool = False) -> torch.Tensor:
    """``[n_mels, audio_frames(spec)]`` float32 ``log10(max(mel power, 1e-10))`` of a mono waveform
    at ``spec.sample_rate`` Hz, cut or zero-padded to ``spec.max_seconds`` first (Hann window of
    ``n_fft`` samples, hop ``hop_length`` samples, Slaney mel scale from 0 Hz to Nyquist). With
    ``whole``, every frame of the waveform (``len // hop_length``, at least one window's worth): what
    train-time crops are cut from."""
    from transformers.audio_utils import spectrogram, window_function

    _check_target(spec.sample_rate)
    n = _num_samples(spec)
    x = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if whole:
        n = max(x.size, spec.n_fft)
    x = x[:n]
    if x.size < n:
        x = np.pad(x, (0, n - x.size))
    features = spectrogram(
        x,
        window_function(spec.n_fft, "hann"),
        frame_length=spec.n_fft,
        hop_length=spec.hop_length,
        power=2.0,
        mel_filters=_mel_filters(spec.n_fft, spec.n_mels, spec.sample_rate),
        mel_floor=LOG_FLOOR,
        log_mel="log10",
    )
    return torch.from_numpy(np.ascontiguousarray(features[:, : n // spec.hop_length], dtype=np.float32))


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int) -> Path:
    """Write ``waveform`` (``[n]`` mono or ``[n, channels]``, floats in [-1, 1], clipped) as a
    16-bit PCM WAV at ``sample_rate`` Hz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0)
    sf.write(str(path), data, int(sample_rate), subtype="PCM_16", format="WAV")
    return path


class AudioModality:
    """Audio files read with soundfile, as log-mel spectrograms."""

    name = "audio"
    extensions = EXTENSIONS
    spec_cls = AudioSpec
    is_file = True
    frames_of = None
    visual = False

    def load(self, item: str | Path, spec: AudioSpec) -> torch.Tensor:
        """An audio file -> float32 ``[n_mels, frames]``."""
        return log_mel(load_waveform(item, spec.sample_rate, spec.max_seconds), spec)

    def collate(self, items: list[torch.Tensor], spec: Any = None) -> dict[str, torch.Tensor]:
        """Stack ``[n_mels, frames]`` samples into ``{"input_features": [B, n_mels, frames]}``."""
        if not items:
            raise ValueError("cannot collate an empty list of audio clips")
        return {"input_features": torch.stack(items)}

    def duration(self, path: Path) -> float | None:
        return float(sf.info(str(path)).duration)

    def still(self, path: Path) -> None:
        return None  # nothing to see


MODALITIES.register("audio", AudioModality())
