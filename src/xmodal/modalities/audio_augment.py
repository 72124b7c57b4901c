"""Train-time views of audio clips: random crops, SpecAugment masks, gain, noise and mixup.

The log-mel of the whole clip (up to ``max_source_seconds``) is computed once per file and kept on
disk; each view cuts a random window of the spec's ``max_seconds`` from it (a shorter clip lands at a
random offset in silence), changes its gain, adds white noise at a random signal-to-noise ratio, and
masks random stretches of time and bands of frequency (SpecAugment, Park et al., Interspeech 2019).
:meth:`AudioAugmenter.mix` mixes clips of a batch in the power domain (mixup, Zhang et al., ICLR 2018).
All of it acts on log10 mel power, so a view costs no decoding and no FFT.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from xmodal.engine.cache import DiskCache
from xmodal.modalities.audio import SILENCE, audio_frames, load_waveform, log_mel
from xmodal.modalities.augment import AUGMENTERS
from xmodal.modalities.base import AudioSpec
from xmodal.modalities.image import check_file


@dataclass
class AudioAugmentConfig:
    """Train-time views of audio clips."""

    crop: bool = True  # a random window of max_seconds within the clip (a shorter clip at a random offset); False: its start
    max_source_seconds: float = 30.0  # longest stretch of a clip decoded (and kept on disk) for crops, seconds
    time_masks: int = 2  # SpecAugment time masks per view
    time_mask: float = 0.1  # widest time mask, as a fraction of the window's frames
    freq_masks: int = 2  # SpecAugment frequency masks per view
    freq_mask: float = 0.15  # widest frequency mask, as a fraction of the mel bands
    gain_db: float = 6.0  # random gain, uniform within +-gain_db decibels
    noise: float = 0.5  # probability that a view gets white noise
    snr_db: tuple[float, float] = (10.0, 40.0)  # range of that noise's signal-to-noise ratio, decibels
    mixup: float = 0.5  # fraction of batches mixed (0 = no mixup)
    mixup_alpha: float = 0.4  # the mixing weight is max(w, 1 - w) for w ~ Beta(alpha, alpha)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _randint(high: int) -> int:
    """A random integer in ``[0, high]``."""
    return int(torch.randint(0, high + 1, ()))


def crop(mel: torch.Tensor, frames: int, random: bool = True) -> torch.Tensor:
    """``[n_mels, frames]`` of a whole-clip log-mel: a random window (its start when not ``random``); a
    shorter clip is placed at a random offset (at 0 when not ``random``) in silence."""
    n = mel.shape[1]
    if n >= frames:
        start = _randint(n - frames) if random else 0
        return mel[:, start:start + frames].clone()
    out = torch.full((mel.shape[0], frames), SILENCE, dtype=mel.dtype)
    offset = _randint(frames - n) if random else 0
    out[:, offset:offset + n] = mel
    return out


def perturb(mel: torch.Tensor, cfg: AudioAugmentConfig) -> torch.Tensor:
    """Gain, white noise and SpecAugment masks on a ``[n_mels, frames]`` log10 mel power, in place."""
    mel += _uniform(-cfg.gain_db, cfg.gain_db) / 10  # decibels of power -> log10
    if cfg.noise > 0 and float(torch.rand(())) < cfg.noise:
        signal = torch.pow(10.0, mel).mean()  # slaney-normalised bands: white noise has equal power in each
        noise = signal / 10 ** (_uniform(*cfg.snr_db) / 10)
        mel.copy_(torch.log10(torch.pow(10.0, mel) + noise))
    fill = float(mel.mean())
    for axis, count, widest in ((1, cfg.time_masks, cfg.time_mask), (0, cfg.freq_masks, cfg.freq_mask)):
        size = mel.shape[axis]
        for _ in range(count):
            width = _randint(int(widest * size))
            start = _randint(size - width)
            mel.narrow(axis, start, width).fill_(fill)
    return mel


class AudioAugmenter:
    """Registered for ``audio``."""

    config_cls = AudioAugmentConfig

    def whole(self, path: Path, spec: AudioSpec, cfg: AudioAugmentConfig, cache: DiskCache | None) -> torch.Tensor:
        """The log-mel of the first ``max_source_seconds`` of a file, from ``cache`` when it holds it."""
        path = check_file(path)

        def compute() -> torch.Tensor:
            wave = load_waveform(path, spec.sample_rate)[: int(cfg.max_source_seconds * spec.sample_rate)]
            return log_mel(wave, spec, whole=True)

        if cache is None:
            return compute()
        stat = os.stat(path)  # the file's size and time are in the key: an edited file is decoded again
        key = (f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{spec.sample_rate}|{spec.n_mels}|"
               f"{spec.n_fft}|{spec.hop_length}|{cfg.max_source_seconds}")
        return cache.get(key, compute)

    def view(self, path: Path, spec: AudioSpec, cfg: AudioAugmentConfig, cache: DiskCache | None) -> torch.Tensor:
        """A random ``[n_mels, audio_frames(spec)]`` training view of an audio file."""
        return perturb(crop(self.whole(path, spec, cfg, cache), audio_frames(spec), cfg.crop), cfg)

    def plain(self, path: Path, spec: AudioSpec, cfg: AudioAugmentConfig, cache: DiskCache | None) -> torch.Tensor:
        """The clip's first ``max_seconds`` (as ``load`` gives it, but for the last frame or two), from ``cache``."""
        return crop(self.whole(path, spec, cfg, cache), audio_frames(spec), random=False)

    def mix(self, inputs: dict[str, torch.Tensor], cfg: AudioAugmentConfig
            ) -> tuple[dict[str, torch.Tensor], torch.Tensor, float] | None:
        """Mix each clip with another of the batch in the power domain, loudness-normalised (each clip
        at its own mean power, the mixture at the first clip's), for a ``cfg.mixup`` fraction of batches."""
        x = inputs["input_features"]
        if cfg.mixup <= 0 or len(x) < 2 or float(torch.rand(())) >= cfg.mixup:
            return None
        w = float(torch.distributions.Beta(cfg.mixup_alpha, cfg.mixup_alpha).sample())
        w = max(w, 1 - w)
        perm = torch.randperm(len(x), device=x.device)
        power = torch.pow(10.0, x.float())
        level = power.mean((1, 2), keepdim=True)
        mixed = (w * power / level + (1 - w) * power[perm] / level[perm]) * level
        return {**inputs, "input_features": torch.log10(mixed).to(x.dtype)}, perm, w


AUGMENTERS.register("audio", AudioAugmenter())
