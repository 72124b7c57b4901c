"""A look at a built-in world: a contact sheet PNG, an animated GIF of clips, a clip + sound strip.

``write_preview(root)`` reads the world's manifests (so it shows what is on disk) and writes
``root/preview/contact_sheet.png``, ``clips.gif`` and ``clip_strip.png``, and for a world with stories
``story_strip.png`` (a story's frames with boxes, its events on a timeline, its caption and questions).
"""

from __future__ import annotations

import json
import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFont

from xmodal.data.manifest import read_manifest
from xmodal.experiments.world import world_paths
from xmodal.experiments.world_render import COLOURS
from xmodal.errors import DataError

HELD_OUT_COLOUR = "#d6008f"  # frame and label of held-out combinations
TILE = 160  # pixels per clip in the GIF


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure drawn by Agg (no pyplot state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


@lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except (ImportError, OSError, ValueError):
        return ImageFont.load_default()


def read_clip(path: str | Path) -> np.ndarray:
    """Every frame of a video as uint8 [T, H, W, 3] (PyAV)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _meta(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / "world.json").read_text())
    except (OSError, ValueError):
        raise DataError(root / "world.json", "missing or unreadable; not a world made by generate_world") from None


def _example(rows: list[dict[str, str]], label: str) -> dict[str, str] | None:
    """A representative image of ``label``: prefer a large object in the centre."""
    mine = [r for r in rows if r["label"] == label]
    best = [r for r in mine if r.get("size") == "large" and r.get("position") == "centre"]
    return (best or mine or [None])[0]


def _cell(ax: Any, image: np.ndarray | None, held: bool) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if image is not None:
        ax.imshow(image, interpolation="lanczos")
    else:
        ax.set_facecolor("#f2f2f2")
    for spine in ax.spines.values():
        spine.set_edgecolor(HELD_OUT_COLOUR if held else "#bbbbbb")
        spine.set_linewidth(5 if held else 1)
    if held:
        ax.text(0.5, 0.04, "held out", transform=ax.transAxes, ha="center", va="bottom", fontsize=10,
                fontweight="bold", color="white", bbox={"boxstyle": "round,pad=0.2", "fc": HELD_OUT_COLOUR,
                                                         "ec": "none"})


def write_contact_sheet(root: Path, out: Path) -> Path:
    """Grid of example images: rows = colours, columns = shapes; held-out combinations framed."""
    meta = _meta(root)
    colours, shapes = meta["config"]["colours"], meta["config"]["shapes"]
    held = {f"{c} {s}" for c, s in meta["held_out"]}
    rows = read_manifest(world_paths(root)["images"])
    fig = _figure(1.45 * len(shapes) + 0.9, 1.45 * len(colours) + 1.0)
    axes = fig.subplots(len(colours), len(shapes), squeeze=False)
    for i, colour in enumerate(colours):
        for j, shape in enumerate(shapes):
            label = f"{colour} {shape}"
            row = _example(rows, label)
            image = np.asarray(Image.open(root / row["path"]).convert("RGB")) if row else None
            _cell(axes[i][j], image, label in held)
            if i == 0:
                axes[i][j].set_title(shape, fontsize=12)
            if j == 0:
                axes[i][j].set_ylabel(colour, fontsize=12, rotation=0, ha="right", va="center")
    fig.suptitle(f"Built-in world: one image per colour-shape combination\n{len(held)} combinations held out "
                 "of training (named only in words at test time)", fontsize=11)
    fig.subplots_adjust(left=0.13, right=0.98, bottom=0.02, top=1 - 0.85 / fig.get_figheight(),
                        wspace=0.08, hspace=0.08)
    fig.savefig(out)
    return out


def _pick_clips(videos: list[dict[str, str]], motions: list[str]) -> list[dict[str, str]]:
    """A test clip of every motion (any split if a motion has none); the i-th motion shows its i-th clip
    so that a motion and its opposite do not show the same (time-reversed) clip."""
    picked = []
    for i, motion in enumerate(motions):
        mine = [r for r in videos if r["motion"] == motion]
        mine = [r for r in mine if r["split"] == "test"] or mine
        if mine:
            picked.append(mine[i % len(mine)])
    return picked


def _tile(frame: np.ndarray, text: str) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE + 22), "white")
    tile.paste(Image.fromarray(frame).resize((TILE, TILE), Image.LANCZOS), (0, 0))
    draw = ImageDraw.Draw(tile)
    size = 13
    while size > 7 and draw.textlength(text, font=_font(size)) > TILE - 4:
        size -= 1
    draw.text((TILE // 2, TILE + 11), text, fill="black", font=_font(size), anchor="mm")
    return tile


def write_clips_gif(root: Path, out: Path, columns: int = 4) -> Path:
    """Animated GIF: one clip per motion side by side, each labelled with its motion."""
    meta = _meta(root)
    clips = _pick_clips(read_manifest(world_paths(root)["videos"]), meta["motions"])
    if not clips:
        raise DataError(world_paths(root)["videos"], "no clips to preview")
    videos = [read_clip(root / r["path"]) for r in clips]
    n = min(len(v) for v in videos)
    cols = min(columns, len(clips))
    nrows = -(-len(clips) // cols)
    sheets = []
    for t in range(n):
        sheet = Image.new("RGB", (cols * (TILE + 6) + 6, nrows * (TILE + 28) + 6), "white")
        for k, (row, video) in enumerate(zip(clips, videos)):
            x, y = 6 + (k % cols) * (TILE + 6), 6 + (k // cols) * (TILE + 28)
            sheet.paste(_tile(video[t], row["motion"]), (x, y))
        sheets.append(sheet.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
    fps = float(meta["config"]["video_fps"])
    sheets[0].save(out, save_all=True, append_images=sheets[1:], duration=int(round(1000 / fps)), loop=0,
                   optimize=False)
    return out


def write_clip_strip(root: Path, out: Path, motion: str = "moving right") -> Path:
    """One clip's frames in a row above its sound's spectrogram (hits marked)."""
    videos = read_manifest(world_paths(root)["videos"])
    row = (_pick_clips(videos, [motion]) or videos)[0]
    video = read_clip(root / row["path"])
    wave, rate = sf.read(str(root / row["audio"]), dtype="float32")
    step = max(1, len(video) // 8)
    frames = video[::step][:8]
    fig = _figure(10, 4.6)
    grid = fig.add_gridspec(2, len(frames), height_ratios=[1.2, 1.5], hspace=0.25, wspace=0.05,
                            left=0.07, right=0.98, top=0.88, bottom=0.11)
    for k, frame in enumerate(frames):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(frame, interpolation="lanczos")
        ax.set_axis_off()
        ax.set_title(f"t={k * step}", fontsize=9)
    ax = fig.add_subplot(grid[1, :])
    ax.specgram(wave, NFFT=512, Fs=rate, noverlap=448, cmap="magma", vmin=-110)
    ax.set_ylim(0, min(4000, rate / 2))
    ax.set_xlabel("seconds")
    ax.set_ylabel("Hz")
    fig.suptitle(f"{row['caption']}  ({row['path']}; sound: {row['audio']})", fontsize=10)
    fig.savefig(out)
    return out


def _pick_story(stories: list[dict[str, Any]]) -> dict[str, Any]:
    """The story that shows the most: a test story, held out, with many events and a still object."""
    return max(stories, key=lambda s: (s["split"] == "test", s["held_out"], len(s["events"]),
                                       len(s["objects"]), -stories.index(s)))


def _rgb(colour: str) -> tuple[float, ...]:
    return tuple(c / 255 for c in COLOURS.get(colour, (90, 90, 90)))


def _story_frames(fig: Any, grid: Any, root: Path, story: dict[str, Any], count: int = 8) -> None:
    """``count`` frames of the story in a row, each object's box drawn (thick: moving now; dashed: never moves)."""
    from matplotlib.patches import Rectangle

    video = read_clip(root / story["path"])
    step = max(1, len(video) // count)
    for k, t in enumerate(range(0, len(video), step)[:count]):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(video[t], interpolation="lanczos")
        side, now = video.shape[1], t / story["fps"]
        acting = [(e["colour"], e["shape"]) for e in story["events"] if e["start"] <= now < e["end"]]
        for o in story["objects"]:
            x0, y0, x1, y1 = (v * side - 0.5 for v in o["boxes"][t])
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=_rgb(o["colour"]),
                                   lw=3.2 if (o["colour"], o["shape"]) in acting else 1.4,
                                   ls="-" if o["moves"] else (0, (3, 2))))
        ax.set_axis_off()
        ax.set_title(f"frame {t}  ·  {t / story['fps']:.2f} s", fontsize=9)


def _story_timeline(ax: Any, story: dict[str, Any]) -> None:
    """Each event's [start, end) span on its own row, labelled with its query."""
    events, duration = story["events"], story["duration"]
    for i, e in enumerate(events):
        ax.broken_barh([(e["start"], e["end"] - e["start"])], (i - 0.38, 0.76), fc=(*_rgb(e["colour"]), 0.35),
                       ec=_rgb(e["colour"]), lw=1.5)
        left = e["start"] < duration / 2
        ax.text(e["start"] + 0.04 if left else e["end"] - 0.04, i,
                f"{e['query']}  [{e['start']:.3g}, {e['end']:.3g}) s", ha="left" if left else "right",
                va="center", fontsize=9.5)
    ax.set_xlim(0, duration)
    ax.set_ylim(len(events) - 0.5, -0.5)
    ax.set_yticks(range(len(events)), [f"event {i + 1}" for i in range(len(events))], fontsize=9)
    ax.set_xlabel("seconds", fontsize=9)
    ax.grid(axis="x", color="#dddddd")
    ax.set_axisbelow(True)


def _story_text(story: dict[str, Any], held: list[list[str]]) -> tuple[str, str]:
    """The title (path, held-out objects, caption) and two questions with choices and answers, temporal first."""
    shown = [f"{o['colour']} {o['shape']}" for o in story["objects"] if [o["colour"], o["shape"]] in held]
    title = story["path"] + (f"  (held out: {', '.join(shown)})" if shown else "")
    title += "\n" + textwrap.fill(f"\u201c{story['caption']}\u201d", 150)
    order = ("after", "first_event", "motion_of", "count_movers", "colour_of_mover", "shape_of_mover")
    questions = sorted(story["questions"], key=lambda q: order.index(q["kind"]) if q["kind"] in order else 99)
    lines = [textwrap.fill(f"Q: {q['question']}   choices: {' | '.join(q['choices'])}", 190,
                           subsequent_indent="     ") + f"\n     A: {q['answer']}   ({q['kind']})"
             for q in questions[:2]]
    return title, "\n".join(lines)


def write_story_strip(root: Path, out: Path) -> Path:
    """One story: its frames with boxes, a timeline of its events, its caption and two of its questions."""
    story = _pick_story(read_manifest(world_paths(root)["stories"]))
    title, questions = _story_text(story, _meta(root)["held_out"])
    # heights in inches, top to bottom: title, frame titles, frames (8 across 13 in), gap, timeline, axis
    # label, questions; the figure grows with the text and the number of events
    heights = [0.2 + 0.2 * (title.count("\n") + 1), 0.3, 1.42, 0.2, 0.2 + 0.34 * len(story["events"]), 0.5,
               0.15 + 0.22 * (questions.count("\n") + 1)]
    height = sum(heights)
    fig = _figure(13, height)
    frames_top = 1 - sum(heights[:2]) / height
    grid = fig.add_gridspec(1, 8, wspace=0.06, left=0.07, right=0.99, top=frames_top,
                            bottom=frames_top - heights[2] / height)
    _story_frames(fig, grid, root, story)
    _story_timeline(fig.add_axes((0.07, sum(heights[5:]) / height, 0.92, heights[4] / height)), story)
    fig.suptitle(title, fontsize=11, y=1 - 0.12 / height, va="top")
    fig.text(0.02, 0.1 / height, questions, fontsize=9.5, va="bottom", ha="left", linespacing=1.5)
    fig.savefig(out)
    return out


def write_preview(root: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write a contact sheet PNG, a GIF of clips and a clip + spectrogram PNG (and, for a world with
    stories, a story strip PNG); return their paths."""
    root = Path(root)
    out = root / "preview" if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_contact_sheet(root, out / "contact_sheet.png"), write_clips_gif(root, out / "clips.gif"),
             write_clip_strip(root, out / "clip_strip.png")]
    if "stories" in world_paths(root):
        paths.append(write_story_strip(root, out / "story_strip.png"))
    return paths
