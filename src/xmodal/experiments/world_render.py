"""Drawing for the built-in world: coloured shapes on light backgrounds, still or in motion, and the
words for the motions (``MOTION_PHRASES``) shared by clips, stories and questions.

Everything is drawn at 4x with Pillow and downsampled with LANCZOS (anti-aliased), then given mild
noise. Screen coordinates: x to the right, y down, angles in radians with increasing angle turning
*clockwise* on screen. A clip of a motion is the exact time reversal of a clip of its opposite
(``render_clip``), so the average frame can never tell the two apart.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

SCALE = 4  # supersampling factor of the drawing canvas

# name -> RGB; clearly distinct hues that all stand out on a light grey background
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30), "green": (30, 160, 50), "blue": (35, 75, 215), "yellow": (235, 195, 0),
    "purple": (135, 50, 185), "orange": (245, 125, 10), "pink": (240, 90, 180), "cyan": (0, 180, 200),
    "brown": (125, 75, 30), "black": (25, 25, 25), "white": (252, 252, 252), "grey": (120, 120, 120),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "heart", "pentagon", "hexagon")
SIZES = {"small": 0.15, "medium": 0.21, "large": 0.27}  # object radius as a fraction of the image side
POSITIONS = {"left": (0.3, 0.5), "right": (0.7, 0.5), "top": (0.5, 0.3), "bottom": (0.5, 0.7),
             "centre": (0.5, 0.5)}  # object centre as fractions of the image side (x, y down)
# motion -> (the motion whose clips are drawn, reversed in time?)
MOTIONS: dict[str, tuple[str, bool]] = {
    "moving left": ("moving right", True), "moving right": ("moving right", False),
    "moving up": ("moving down", True), "moving down": ("moving down", False),
    "rotating clockwise": ("rotating clockwise", False),
    "rotating counterclockwise": ("rotating clockwise", True),
    "growing": ("growing", False), "shrinking": ("growing", True),
}
CANONICAL = ("moving right", "moving down", "rotating clockwise", "growing")  # drawn forwards
# motion -> ways to say it (the i-th phrase of a motion and of its opposite are each other's reversal)
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "moving left": ("moving left", "sliding to the left", "going left"),
    "moving right": ("moving right", "sliding to the right", "going right"),
    "moving up": ("moving up", "rising", "going up"),
    "moving down": ("moving down", "falling", "going down"),
    "rotating clockwise": ("rotating clockwise", "spinning clockwise", "turning clockwise"),
    "rotating counterclockwise": ("rotating counterclockwise", "spinning anticlockwise", "turning counterclockwise"),
    "growing": ("growing", "getting bigger", "expanding"),
    "shrinking": ("shrinking", "getting smaller", "contracting"),
}
VERBS = {"moving": "moves", "sliding": "slides", "going": "goes", "rising": "rises", "falling": "falls",
         "rotating": "rotates", "spinning": "spins", "turning": "turns", "growing": "grows", "getting": "gets",
         "expanding": "expands", "shrinking": "shrinks", "contracting": "contracts"}  # first words of the phrases
MARKER_RGB = (30, 30, 30)  # the dot that makes the sense of rotation visible in clips


def shape_polygon(shape: str, cx: float, cy: float, r: float, theta: float) -> list[tuple[float, float]]:
    """Vertices of ``shape`` (not a circle) inscribed in the circle (cx, cy, r), turned by ``theta``.

    At ``theta = 0`` a vertex (or arm) of every shape but the square points straight up."""
    if shape == "cross":
        w = 0.34  # half-width of an arm, as a fraction of r
        pts = [(w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w),
               (-w, -w), (-w, -1)]
        top = math.hypot(w, 1)  # the arm corners lie on the circle
        radial = [(math.hypot(x, y) / top, math.atan2(y, x)) for x, y in pts]
    elif shape == "star":
        radial = [(1.0 if k % 2 == 0 else 0.45, -math.pi / 2 + k * math.pi / 5) for k in range(10)]
    elif shape == "heart":  # the classic parametric heart, lobes up, tip pointing down (y grows down)
        ts = [2 * math.pi * k / 36 for k in range(36)]
        pts = [(16 * math.sin(t) ** 3, -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t)
                                         - math.cos(4 * t)) + 2.5) for t in ts]
        top = max(math.hypot(x, y) for x, y in pts)
        radial = [(math.hypot(x, y) / top, math.atan2(y, x)) for x, y in pts]
    else:
        n = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}[shape]
        start = -math.pi / 2 + (math.pi / 4 if shape == "square" else 0.0)
        radial = [(1.0, start + 2 * math.pi * k / n) for k in range(n)]
    return [(cx + r * m * math.cos(a + theta), cy + r * m * math.sin(a + theta)) for m, a in radial]


def draw_object(draw: ImageDraw.ImageDraw, shape: str, rgb: tuple[int, ...], cx: float, cy: float, r: float,
                theta: float, marker: bool) -> None:
    """Draw one object (canvas coordinates) and, if ``marker``, a dark dot towards its top vertex."""
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(rgb))
    else:
        draw.polygon(shape_polygon(shape, cx, cy, r, theta), fill=tuple(rgb))
    if marker:
        d = {"circle": 0.62, "square": 0.42}.get(shape, 0.55) * r
        mx, my = cx + d * math.sin(theta), cy - d * math.cos(theta)
        m = max(0.14 * r, 1.5 * SCALE)
        draw.ellipse([mx - m, my - m, mx + m, my + m], fill=MARKER_RGB)


def pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    """One of ``options``, uniformly (one draw of ``rng``)."""
    return options[int(rng.integers(len(options)))]


def twin(motion: str) -> str:
    """The motion whose clips are the time reversal of ``motion``'s ("moving left" -> "moving right")."""
    canonical, reverse = MOTIONS[motion]
    return next(name for name, (canon, rev) in MOTIONS.items() if canon == canonical and rev != reverse)


def says(rng: np.random.Generator, motion: str) -> str:
    """A motion phrase as a verb ("moves left", "gets bigger"), for "the red circle moves left"."""
    head, _, rest = pick(rng, MOTION_PHRASES[motion]).partition(" ")
    return f"{VERBS[head]} {rest}".rstrip()


def background(rng: np.random.Generator) -> tuple[int, int, int]:
    """A light grey with a faint random tint."""
    grey = rng.uniform(195, 240)
    return tuple(int(round(grey + t)) for t in rng.uniform(-6, 6, 3))


def jitter_rgb(rgb: tuple[int, int, int], rng: np.random.Generator, amount: float = 10) -> tuple[int, ...]:
    return tuple(int(np.clip(round(c + d), 0, 255)) for c, d in zip(rgb, rng.uniform(-amount, amount, 3)))


def _render(size: int, bg: tuple[int, ...], objects: list[dict[str, Any]]) -> np.ndarray:
    """Draw ``objects`` (pixel coordinates of the final image) at 4x and downsample: uint8 [H, W, 3]."""
    canvas = Image.new("RGB", (size * SCALE, size * SCALE), bg)
    draw = ImageDraw.Draw(canvas)
    for o in objects:
        draw_object(draw, o["shape"], o["rgb"], o["cx"] * SCALE, o["cy"] * SCALE, o["r"] * SCALE,
                    o["theta"], o.get("marker", False))
    return np.asarray(canvas.resize((size, size), Image.LANCZOS))


def _add_noise(frames: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return np.clip(frames.astype(np.float32) + noise, 0, 255).round().astype(np.uint8)


def render_image(colour: str, shape: str, size: str, position: str, rng: np.random.Generator,
                 image_size: int, rotation: float = 20.0, marker: bool = False) -> np.ndarray:
    """One still image: the object at its named position and size, jittered a little, turned by up to
    ``rotation`` degrees either way (180: any orientation, as clips and stories draw objects) and, with
    ``marker``, carrying the clips' orientation dot; uint8 [S, S, 3]."""
    s = image_size
    r = SIZES[size] * s * rng.uniform(0.92, 1.08)
    fx, fy = POSITIONS[position]
    cx = np.clip(fx * s + rng.uniform(-0.04, 0.04) * s, r + 1, s - r - 1)
    cy = np.clip(fy * s + rng.uniform(-0.04, 0.04) * s, r + 1, s - r - 1)
    # a circle's turn shows only through its marker (no draw without one: the draws of older worlds)
    theta = 0.0 if shape == "circle" and not marker else math.radians(rng.uniform(-rotation, rotation))
    bg = background(rng)
    obj = {"shape": shape, "rgb": jitter_rgb(COLOURS[colour], rng), "cx": cx, "cy": cy, "r": r, "theta": theta,
           "marker": marker}
    img = _render(s, bg, [obj])
    return _add_noise(img, rng.normal(0, 3.0, img.shape))


def _edge_extent(rng: np.random.Generator, r: float, s: int) -> tuple[float, float]:
    """Start/end of a crossing on one axis; ~40% of ends touch the frame edge (a 'bounce' sound)."""
    lo = r + max(0.0, rng.uniform(-0.08, 0.12)) * s
    hi = s - r - max(0.0, rng.uniform(-0.08, 0.12)) * s
    return lo, hi


def canonical_trajectory(motion: str, rng: np.random.Generator, size: int, frames: int) -> dict[str, np.ndarray]:
    """Per-frame ``cx, cy, r, theta`` (pixels, radians) of a forward-drawn motion (see CANONICAL)."""
    s, t = size, np.linspace(0.0, 1.0, frames)
    ones = np.ones(frames)
    if motion in ("moving right", "moving down"):
        r = rng.uniform(0.14, 0.20) * s
        lo, hi = _edge_extent(rng, r, s)
        across = rng.uniform(0.3, 0.7) * s * ones
        along = lo + (hi - lo) * t
        cx, cy = (along, across) if motion == "moving right" else (across, along)
        return {"cx": cx, "cy": cy, "r": r * ones, "theta": rng.uniform(0, 2 * math.pi) * ones}
    if motion == "rotating clockwise":
        r = rng.uniform(0.20, 0.28) * s
        cx, cy = rng.uniform(0.4, 0.6, 2) * s
        theta = rng.uniform(0, 2 * math.pi) + rng.uniform(0.5, 0.9) * 2 * math.pi * t
        return {"cx": cx * ones, "cy": cy * ones, "r": r * ones, "theta": theta}
    if motion == "growing":
        r0, r1 = rng.uniform(0.08, 0.12) * s, rng.uniform(0.26, 0.32) * s
        cx, cy = np.clip(rng.uniform(r1 - 0.05 * s, s - r1 + 0.05 * s, 2), r1, s - r1)
        return {"cx": cx * ones, "cy": cy * ones, "r": r0 + (r1 - r0) * t,
                "theta": rng.uniform(0, 2 * math.pi) * ones}
    raise ValueError(f"not a canonical motion: {motion!r}")


def render_clip(colour: str, shape: str, motion: str, rng: np.random.Generator, size: int,
                frames: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frames uint8 [T, S, S, 3] and the per-frame trajectory of one clip.

    The clip of a motion is drawn as its canonical motion and then reversed in time where needed, so
    with the same ``rng`` state 'moving left' is exactly 'moving right' played backwards."""
    canonical, reverse = MOTIONS[motion]
    traj = canonical_trajectory(canonical, rng, size, frames)
    bg, rgb = background(rng), jitter_rgb(COLOURS[colour], rng)
    video = render_frames(size, bg, [[{"shape": shape, "rgb": rgb, "marker": True,
                                       **{k: float(v[i]) for k, v in traj.items()}}] for i in range(frames)], rng)
    return reverse_clip(video, traj) if reverse else (video, traj)


def render_frames(size: int, bg: tuple[int, ...], frames: list[list[dict[str, Any]]],
                  rng: np.random.Generator) -> np.ndarray:
    """Frames uint8 [T, S, S, 3]: frame ``t`` draws the objects ``frames[t]`` in order, then mild noise
    (a frame that shows the same objects as the one before is drawn once)."""
    drawn: list[np.ndarray] = []
    for t, objects in enumerate(frames):
        drawn.append(drawn[-1] if t and objects == frames[t - 1] else _render(size, bg, objects))
    video = np.stack(drawn)
    return _add_noise(video, rng.normal(0, 2.0, video.shape))


def reverse_clip(video: np.ndarray, traj: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The time reversal of a clip (frames and trajectory)."""
    return video[::-1].copy(), {k: v[::-1].copy() for k, v in traj.items()}


def edge_touches(traj: dict[str, np.ndarray], size: int, tol: float = 0.5) -> np.ndarray:
    """Bool per frame: the object's circumscribed circle touches an edge of the frame."""
    gap = np.minimum.reduce([traj["cx"] - traj["r"], traj["cy"] - traj["r"],
                             size - traj["cx"] - traj["r"], size - traj["cy"] - traj["r"]])
    return gap <= tol
