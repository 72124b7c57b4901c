import numpy as np
import pytest

from xmodal.modalities.resample import lowpass, resample_poly


@pytest.mark.parametrize("n, up, down", [(1000, 1, 6), (999, 160, 441), (5000, 2, 3), (37, 3, 2), (100, 5, 1),
                                         (1, 2, 3), (3, 1, 1000), (2000, 999, 1000), (300, 4, 6)])
def test_matches_scipy_resample_poly(n, up, down):
    signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(n).standard_normal(n)
    want = signal.resample_poly(x, up, down)
    got = resample_poly(x, up, down)
    assert got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-12)


def test_a_tone_keeps_its_frequency_and_the_filter_passes_dc():
    rate, target, f = 44100, 16000, 440.0
    t = np.arange(rate) / rate
    y = resample_poly(np.sin(2 * np.pi * f * t), 160, 441)
    assert len(y) == target
    mid = np.arange(target)[2000:-2000]  # away from the zero-padded edges
    assert np.abs(y[mid] - np.sin(2 * np.pi * f * mid / target)).max() < 1e-3
    assert lowpass(160, 441).sum() == pytest.approx(160)  # unit gain at DC, times up
    assert np.array_equal(resample_poly(np.ones(5), 3, 3), np.ones(5))  # 1:1 is a copy
