"""Sound of a clip of the built-in world, tied to what happens on screen.

* timbre per shape (its own mix of harmonics), base pitch per colour (red lowest ... purple highest);
* loudness follows the object's size (growing -> crescendo, shrinking -> decrescendo);
* pitch glides with the motion: up for right / up / clockwise, down for left / down / counterclockwise
  (centred on the clip's middle, so a motion and its opposite span the same pitches);
* a short percussive hit at the start of the motion and whenever the object comes to touch an edge;
* low seeded noise.
"""

from __future__ import annotations

import math

import numpy as np

from xmodal.experiments.world_render import edge_touches

# relative amplitudes of harmonics 1, 2, 3, ... per shape
SHAPE_HARMONICS: dict[str, tuple[float, ...]] = {
    "circle": (1.0,),  # pure sine
    "square": (1.0, 0.0, 0.33, 0.0, 0.2, 0.0, 0.14),  # odd harmonics, hollow (clarinet-like)
    "triangle": (1.0, 0.0, 0.11, 0.0, 0.04),  # soft odd harmonics
    "star": (1.0, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3),  # bright and buzzy (all harmonics)
    "cross": (1.0, 0.8, 0.0, 0.6, 0.0, 0.0, 0.0, 0.4),  # octaves only (organ-like)
    "heart": (1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3),  # soft, with a high glint
    "pentagon": (1.0, 0.0, 0.0, 0.0, 0.7, 0.0, 0.0, 0.0, 0.5),  # bell-like fifth partials
    "hexagon": (1.0, 0.5, 0.0, 0.0, 0.0, 0.5),
}
# base pitch (Hz) per colour: three semitones apart, in spectral order
COLOUR_PITCH: dict[str, float] = {
    "red": 196.0, "orange": 233.1, "yellow": 277.2, "green": 329.6, "cyan": 370.0, "blue": 392.0,
    "purple": 466.2, "pink": 523.3, "brown": 164.8, "black": 130.8, "grey": 146.8, "white": 587.3,
}
GLIDE_PER_WIDTH = 8.0  # semitones of glide per frame width travelled
GLIDE_PER_TURN = 4.0  # semitones of glide per full clockwise turn
HIT_SECONDS = 0.12  # length of a percussive hit


def _glide(motion: str, traj: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Per-frame pitch offset in semitones, zero at the middle of the clip."""
    mid = lambda v: v - 0.5 * (v.min() + v.max())  # noqa: E731
    if motion in ("moving left", "moving right"):
        return GLIDE_PER_WIDTH * mid(traj["cx"]) / size
    if motion in ("moving up", "moving down"):
        return -GLIDE_PER_WIDTH * mid(traj["cy"]) / size  # up the screen = up in pitch
    if motion.startswith("rotating"):
        return GLIDE_PER_TURN * mid(traj["theta"]) / (2 * math.pi)
    return np.zeros_like(traj["cx"])


def _per_sample(values: np.ndarray, fps: float, n: int, rate: int) -> np.ndarray:
    """Frame-level values -> sample-level values (linear between frame centres)."""
    centres = (np.arange(len(values)) + 0.5) / fps
    return np.interp(np.arange(n) / rate, centres, values)


def _tone(shape: str, colour: str, semis: np.ndarray, loud: np.ndarray, rate: int) -> np.ndarray:
    freq = COLOUR_PITCH[colour] * 2.0 ** (semis / 12.0)
    phase = 2 * math.pi * np.cumsum(freq) / rate
    harmonics = SHAPE_HARMONICS[shape]
    wave = sum(a * np.sin(k * phase) for k, a in enumerate(harmonics, start=1) if a and k * freq.max() < rate / 2)
    return loud * wave / sum(harmonics)


def _hits(onsets: list[float], n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Percussive hits (noise burst + low thump, fast decay) starting at ``onsets`` seconds."""
    out = np.zeros(n)
    m = int(HIT_SECONDS * rate)
    t = np.arange(m) / rate
    for start in onsets:
        hit = (0.15 * rng.uniform(-1, 1, m) * np.exp(-t / 0.012)
               + 0.2 * np.sin(2 * math.pi * 90 * t) * np.exp(-t / 0.04))
        i = int(round(start * rate))
        k = min(m, n - i)
        if k > 0:
            out[i:i + k] += hit[:k]
    return out


def onset_times(traj: dict[str, np.ndarray], size: int, fps: float) -> list[float]:
    """Seconds of the percussive hits: motion start, and every frame where an edge starts being touched."""
    touch = edge_touches(traj, size)
    starts = [i for i in range(1, len(touch)) if touch[i] and not touch[i - 1]]
    return [0.0] + [i / fps for i in starts]


def synthesize(shape: str, colour: str, motion: str, traj: dict[str, np.ndarray], size: int, fps: float,
               rate: int, rng: np.random.Generator) -> np.ndarray:
    """Float waveform (peak below 1) lasting ``len(frames) / fps`` seconds, to the nearest sample."""
    n = int(round(len(traj["r"]) / fps * rate))
    semis = _per_sample(_glide(motion, traj, size), fps, n, rate)
    loud = 0.1 + 0.45 * np.clip(_per_sample(traj["r"], fps, n, rate) / (0.3 * size), 0, 1.2)  # <= 0.64
    wave = _tone(shape, colour, semis, loud, rate)
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.01 * rate))
    wave = wave * fade + _hits(onset_times(traj, size, fps), n, rate, rng) + rng.normal(0, 0.002, n)
    return np.clip(wave, -1.0, 1.0)
