"""Polyphase resampling in numpy: the same output as ``scipy.signal.resample_poly`` with its defaults.

A Kaiser-windowed (beta 5) low-pass FIR of ``20 * max(up, down) + 1`` taps at ``1 / max(up, down)`` of
Nyquist, applied by upsampling by ``up``, filtering and keeping every ``down``-th sample, computed only
at the kept samples (polyphase) and aligned so that output sample ``n`` sits at input time ``n * down / up``.
Written here rather than imported because ``scipy.signal`` alone adds ~60 MB to every process that reads
audio, which matters when a decode limit caps a process's memory.
"""

from __future__ import annotations

import numpy as np

HALF_TAPS = 10  # taps on each side of the centre, per unit of max(up, down) (scipy's half_len)
KAISER_BETA = 5.0  # window shape (scipy's default window ("kaiser", 5.0))
BLOCK = 4096  # outputs computed at once per branch (bounds the gathered windows to a few MB)


def lowpass(up: int, down: int) -> np.ndarray:
    """The anti-aliasing filter, scaled by ``up`` (scipy's ``firwin(2 * half + 1, 1 / max_rate) * up``)."""
    rate = max(up, down)
    taps = 2 * HALF_TAPS * rate + 1
    m = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(m / rate) / rate * np.kaiser(taps, KAISER_BETA)
    return h / h.sum() * up


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """``x`` (1-D) resampled by ``up / down`` (both reduced by their gcd first), float64."""
    g = np.gcd(up, down)
    up, down = int(up // g), int(down // g)
    x = np.asarray(x, dtype=np.float64)
    if up == down == 1:
        return x.copy()
    h = lowpass(up, down)
    half = HALF_TAPS * max(up, down)
    pre = down - half % down  # zeros before the filter, so that output samples fall on its centre
    h = np.concatenate([np.zeros(pre), h])
    skip = (half + pre) // down  # leading outputs of the full convolution that precede input time 0
    n_out = -(-len(x) * up // down)
    taps = -(-len(h) // up)  # taps per polyphase branch
    branches = np.concatenate([h, np.zeros(taps * up - len(h))]).reshape(taps, up).T[:, ::-1]  # [up, taps], reversed
    padded = np.concatenate([np.zeros(taps), x, np.zeros(taps + down)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps)  # a view: row i = padded[i:i + taps]
    j = (np.arange(n_out) + skip) * down  # each output's position in the upsampled signal
    first, phase = j // up + 1, j % up  # its window (input q - taps + 1 .. q, shifted by the padding) and branch
    out = np.empty(n_out)
    for b in np.unique(phase):
        rows = np.flatnonzero(phase == b)
        for k in range(0, len(rows), BLOCK):
            part = rows[k:k + BLOCK]
            out[part] = windows[first[part]] @ branches[b]
    return out
