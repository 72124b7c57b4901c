"""Audio decoding, resampling and log-mel features with real WAV files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from xmodal.errors import DataError
from xmodal.modalities import MODALITIES, AudioSpec
from xmodal.modalities.audio import _mel_filters, audio_frames, load_waveform, log_mel, resample_factors, write_wav

AUDIO = MODALITIES.get("audio")
SPEC = AudioSpec(sample_rate=16000, n_mels=32, n_fft=400, hop_length=160, max_seconds=1.0)


def tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x))) * rate / len(x))


def test_resample_keeps_pitch(tmp_path) -> None:
    write_wav(tmp_path / "a.wav", tone(440, 1.0, 8000), 8000)
    w = load_waveform(tmp_path / "a.wav", 16000)
    assert w.dtype == np.float32 and w.shape == (16000,)
    assert peak_hz(w, 16000) == pytest.approx(440, abs=1)
    down = load_waveform(tmp_path / "a.wav", 4000)
    assert down.shape == (4000,) and peak_hz(down, 4000) == pytest.approx(440, abs=1)


def test_common_rates() -> None:
    assert resample_factors(44100, 16000) == (160, 441)
    assert resample_factors(48000, 16000) == (1, 3)
    up, down = resample_factors(44056, 16000)  # exact factors 2000/5507 are approximated
    assert max(up, down) <= 1000 and abs(up / down - 16000 / 44056) < 16000 / 44056 / 1000


def test_stereo_mixed_to_mono(tmp_path) -> None:
    left, right = tone(440, 0.5, 16000), tone(1000, 0.5, 16000, amp=0.25)
    write_wav(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000)
    w = load_waveform(tmp_path / "s.wav", 16000)
    assert w.shape == (8000,)
    assert np.allclose(w, (left + right) / 2, atol=2e-4)


def test_bad_audio(tmp_path) -> None:
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(DataError, match="empty.wav: zero-length audio"):
        load_waveform(tmp_path / "empty.wav", 16000)
    x = tone(440, 0.1, 16000)
    x[10] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(DataError, match="nan.wav: audio contains NaN"):
        AUDIO.load(tmp_path / "nan.wav", SPEC)
    sf.write(tmp_path / "slow.wav", tone(10, 0.5, 200), 200)
    with pytest.raises(DataError, match="slow.wav: implausible sample rate 200 Hz"):
        load_waveform(tmp_path / "slow.wav", 16000)
    (tmp_path / "junk.wav").write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(DataError, match="junk.wav: unreadable or corrupt audio"):
        load_waveform(tmp_path / "junk.wav", 16000)
    with pytest.raises(DataError, match="missing.flac: no such file"):
        AUDIO.load(tmp_path / "missing.flac", SPEC)


def test_log_mel_shape_and_loudness() -> None:
    quiet = log_mel(tone(440, 0.6, 16000, amp=0.05), SPEC)
    loud = log_mel(tone(440, 0.6, 16000, amp=0.5), SPEC)
    assert audio_frames(SPEC) == 100
    assert quiet.shape == loud.shape == (32, 100) and quiet.dtype == torch.float32
    above_floor = quiet[:, :50] > -9  # the tone's mel bands (other bands sit at the 1e-10 floor)
    assert above_floor.sum() >= 50
    assert torch.allclose(loud[:, :50][above_floor], quiet[:, :50][above_floor] + 2.0, atol=0.05)  # +20 dB
    band_440 = int(np.argmax(_mel_filters(400, 32, 16000)[440 * 400 // 16000]))  # FFT bin 11 = 440 Hz
    assert (loud[:, 10:50].argmax(0) == band_440).all()
    assert float(loud[:, -5:].max()) == pytest.approx(-10.0)  # zero padding after 0.6 s hits the floor
    long = log_mel(tone(440, 3.0, 16000), SPEC)  # cut to max_seconds
    assert long.shape == (32, 100)


def test_load_and_collate_flac(tmp_path) -> None:
    sf.write(tmp_path / "a.flac", tone(300, 0.3, 22050), 22050)
    x = AUDIO.load(tmp_path / "a.flac", SPEC)
    batch = AUDIO.collate([x, x, x], SPEC)
    assert batch["input_features"].shape == (3, 32, 100)
