"""Train-time audio views: crops of the whole clip's log-mel (decoded once, kept on disk), masks,
gain, noise and mixup; test-time loading is untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.engine.cache import DiskCache
from xmodal.modalities import AUGMENTERS, MODALITIES, AudioSpec
from xmodal.modalities.audio import SILENCE, audio_frames, write_wav
from xmodal.modalities.audio_augment import AudioAugmentConfig, crop, perturb

SPEC = AudioSpec(sample_rate=8000, n_mels=16, n_fft=128, hop_length=64, max_seconds=0.25)
QUIET = AudioAugmentConfig(time_masks=0, freq_masks=0, gain_db=0.0, noise=0.0, mixup=0.0)  # crops only


def chirp(seconds: float, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * (200 + 1500 * t / seconds) * t)).astype(np.float32)


def test_a_view_is_shaped_like_load_and_crops_the_whole_clip(tmp_path) -> None:
    write_wav(tmp_path / "long.wav", chirp(1.0), 8000)
    aug = AUGMENTERS.get("audio")
    torch.manual_seed(0)
    views = [aug.view(tmp_path / "long.wav", SPEC, QUIET, None) for _ in range(6)]
    loaded = MODALITIES.get("audio").load(tmp_path / "long.wav", SPEC)
    assert all(v.shape == loaded.shape == (16, audio_frames(SPEC)) for v in views)
    starts = {int(v.argmax(0).float().mean()) for v in views}  # the rising chirp's pitch tells where a crop starts
    assert len(starts) > 1
    first = aug.view(tmp_path / "long.wav", SPEC, AudioAugmentConfig(crop=False, time_masks=0, freq_masks=0,
                                                                      gain_db=0.0, noise=0.0), None)
    assert torch.allclose(first[:, :-2], loaded[:, :-2], atol=1e-5)  # crop=False: the clip's start, as load gives


def test_short_clips_land_at_a_random_offset_in_silence() -> None:
    mel = torch.zeros(4, 3)
    torch.manual_seed(0)
    outs = [crop(mel, 10) for _ in range(8)]
    assert all(o.shape == (4, 10) and (o == 0).sum() == 12 and (o == SILENCE).sum() == 28 for o in outs)
    assert len({int((o[0] == 0).nonzero()[0]) for o in outs}) > 1
    assert int((crop(mel, 10, random=False)[0] == 0).nonzero()[0]) == 0


def test_masks_gain_and_noise_change_the_view() -> None:
    mel = torch.linspace(-3, 1, 16 * 20).view(16, 20)
    torch.manual_seed(0)
    masked = perturb(mel.clone(), AudioAugmentConfig(time_masks=2, time_mask=0.3, freq_masks=2, freq_mask=0.3,
                                                      gain_db=0.0, noise=0.0))
    flat_rows = int((masked.std(1) < 1e-6).sum())
    flat_cols = int((masked.std(0) < 1e-6).sum())
    assert flat_rows + flat_cols > 0  # some band or stretch was filled with one value
    louder = perturb(mel.clone(), AudioAugmentConfig(time_masks=0, freq_masks=0, gain_db=6.0, noise=0.0))
    shift = louder - mel
    assert torch.allclose(shift, shift[0, 0].expand_as(shift), atol=1e-5)  # a gain is one shift of log10 power
    assert 0 < abs(float(shift[0, 0])) <= 0.6 + 1e-5
    noisy = perturb(torch.full((16, 20), SILENCE), AudioAugmentConfig(time_masks=0, freq_masks=0, gain_db=0.0,
                                                                      noise=1.0, snr_db=(10.0, 10.0)))
    assert float(noisy.min()) > SILENCE  # silence now holds noise


def test_log_mels_are_decoded_once_and_kept_on_disk(tmp_path) -> None:
    write_wav(tmp_path / "a.wav", chirp(0.5), 8000)
    cache = DiskCache(tmp_path / "features")
    aug = AUGMENTERS.get("audio")
    for _ in range(3):
        aug.view(tmp_path / "a.wav", SPEC, AudioAugmentConfig(), cache)
    assert cache.computed == 1 and len(list((tmp_path / "features").glob("*.npy"))) == 1
    other = AudioSpec(sample_rate=8000, n_mels=8, n_fft=128, hop_length=64, max_seconds=0.25)
    assert aug.view(tmp_path / "a.wav", other, AudioAugmentConfig(), cache).shape[0] == 8 and cache.computed == 2
    write_wav(tmp_path / "a.wav", chirp(0.25), 8000)  # a changed file is decoded again
    aug.view(tmp_path / "a.wav", SPEC, AudioAugmentConfig(), cache)
    assert cache.computed == 3


def test_mixup_mixes_powers_at_the_first_clips_loudness() -> None:
    aug = AUGMENTERS.get("audio")
    x = torch.stack([torch.full((4, 6), -2.0), torch.full((4, 6), 1.0)])
    assert aug.mix({"input_features": x}, AudioAugmentConfig(mixup=0.0)) is None
    torch.manual_seed(0)
    inputs, perm, w = aug.mix({"input_features": x}, AudioAugmentConfig(mixup=1.0))
    assert 0.5 <= w <= 1 and sorted(perm.tolist()) == [0, 1]
    # loudness-normalised: each mixture of flat spectra sits at its first clip's level
    assert torch.allclose(inputs["input_features"], x, atol=1e-5)


def test_bad_config_keys_are_named() -> None:
    from xmodal.config import from_dict
    from xmodal.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(AUGMENTERS.get("audio").config_cls, {"mixupp": 1})
