"""Stories of the built-in world: untrimmed clips in which several shapes act, one after another.

A story has ``n`` events (``n`` sampled in ``WorldConfig.story_events``), each by its own object, and
with probability ``story_distractor`` one more object that never moves. The objects of a story have
distinct colours and distinct shapes and are all drawn in every frame (radius about 0.10-0.16 of the
side). A mover rests at its motion's start state, performs the motion during its event (the clips'
``canonical_trajectory``, reversed in time for the opposite motion, compressed into the event) and
rests at the end state afterwards; it is drawn on top while it moves (it may pass over others; objects
at rest are placed apart from each other wherever one of 64 tries allows). Events are sequential and never
overlap: 8-14 frames each at 32 frames per story (scaled to ``story_frames``), 0-4 frames apart, with
idle frames before the first and after the last allowed. The caption names every event's object in
order and, when there is one, the still object last ("..., while the green star stays still"). Times are
seconds: ``start = first frame / fps`` and ``end = (last frame + 1) / fps`` (end exclusive).

Train and val stories never show a held-out colour-shape combination; every other test story (``k``
even) has one as a mover. See :func:`build_stories` for the manifests.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from xmodal.experiments.world_questions import ask
from xmodal.experiments.world_render import (COLOURS, MOTION_PHRASES, MOTIONS, background, canonical_trajectory,
                                             jitter_rgb, pick, render_frames, says)
from xmodal.errors import ConfigError
from xmodal.modalities.video import write_video

SPLITS = ("train", "val", "test")
EVENT_FRAMES = (8, 14)  # event length in frames at 32 frames per story (scaled to story_frames)
MAX_GAP = 4  # most frames between two events at 32 frames per story (scaled)
RADIUS = (0.10, 0.16)  # largest radius of an object, as a fraction of the side
GROWN_RADIUS = (0.14, 0.18)  # largest radius of a growing or shrinking object (it starts at about a third)
CLEARANCE = 0.03  # gap kept between objects at rest, as a fraction of the side
PLACEMENTS = 64  # candidate places tried per object
QUERY_TEMPLATES = ("the {colour} {shape} {motion}", "{a} {colour} {shape} {motion}",
                   "the {shape} in {colour} {motion}", "the moment the {colour} {shape} is {motion}")
GROUNDING_COLUMNS = ("path", "query", "start", "end", "duration", "split", "colour", "shape", "motion", "held_out")
CAPTION_COLUMNS = ("path", "caption", "split", "held_out")
PARALLEL_STORIES = 200  # stories from which several processes draw them (below, starting them costs more)
QA_FIELDS = ("path", "question", "choices", "answer", "kind", "split", "held_out")


def story_jobs(cfg: Any) -> list[tuple[str, int]]:
    """(split, item) of every story of a WorldConfig, in manifest order."""
    per_split = {"train": cfg.stories_train, "val": cfg.stories_val, "test": cfg.stories_test}
    return [(split, k) for split in SPLITS for k in range(per_split[split])]


def event_bounds(frames: int) -> tuple[int, int, int]:
    """Shortest and longest event and longest gap, in frames, for stories of ``frames`` frames."""
    shortest = max(2, frames * EVENT_FRAMES[0] // 32)
    return shortest, max(shortest, frames * EVENT_FRAMES[1] // 32), frames * MAX_GAP // 32


def _timeline(rng: np.random.Generator, n: int, frames: int) -> list[tuple[int, int]]:
    """``n`` sequential [first, stop) frame spans inside ``frames`` frames (needs n * shortest <= frames)."""
    shortest, longest, gap = event_bounds(frames)
    lengths = rng.integers(shortest, longest + 1, n)
    gaps = rng.integers(0, gap + 1, max(n - 1, 0))
    while lengths.sum() + gaps.sum() > frames:  # shorten the longest event, then the widest gap
        if lengths.max() > shortest:
            lengths[int(np.argmax(lengths))] -= 1
        else:
            gaps[int(np.argmax(gaps))] -= 1
    first = int(rng.integers(0, frames - lengths.sum() - gaps.sum() + 1))
    spans = []
    for i, length in enumerate(lengths):
        spans.append((first, first + int(length)))
        first += int(length) + (int(gaps[i]) if i < len(gaps) else 0)
    return spans


def _cast(rng: np.random.Generator, cfg: Any, held: list[tuple[str, str]], movers: int, extra: int,
          force_held: bool) -> list[tuple[str, str]]:
    """(colour, shape) of ``movers + extra`` objects (movers first), all colours and all shapes distinct.
    Without ``force_held`` no object is a held-out combination; with it, one random mover is."""
    for _ in range(200):
        cast = [tuple(held[int(rng.integers(len(held)))])] if force_held else []
        colours = [c for c in cfg.colours if all(c != x for x, _ in cast)]
        shapes = [s for s in cfg.shapes if all(s != y for _, y in cast)]
        pairs = [(colours[i], shapes[j]) for i, j in zip(rng.permutation(len(colours)), rng.permutation(len(shapes)))]
        pairs = pairs[:movers + extra - len(cast)]
        if force_held:
            at = int(rng.integers(movers))
            return pairs[:at] + cast + pairs[at:]
        if not any(p in held for p in pairs):
            return pairs
    raise ConfigError("WorldConfig: cannot pick story objects that avoid the held-out combinations; "
                      "use more colours and shapes or fewer events")


def _track(rng: np.random.Generator, motion: str | None, span: tuple[int, int], size: int,
           frames: int) -> dict[str, np.ndarray]:
    """Per-frame ``cx, cy, r, theta`` of one object before placement: at rest, then ``motion`` during
    ``span`` (sample ``i`` of a trajectory of ``length + 1`` samples at the span's i-th frame), then at rest."""
    if motion is None:  # a distractor: one state throughout, placed later
        r, theta = rng.uniform(*RADIUS) * size, rng.uniform(0, 2 * np.pi)
        return {"cx": np.full(frames, size / 2), "cy": np.full(frames, size / 2), "r": np.full(frames, r),
                "theta": np.full(frames, theta)}
    canonical, reverse = MOTIONS[motion]
    first, stop = span
    traj = canonical_trajectory(canonical, rng, size, stop - first + 1)
    if reverse:
        traj = {k: v[::-1] for k, v in traj.items()}
    target = rng.uniform(*(GROWN_RADIUS if canonical == "growing" else RADIUS)) * size
    traj["r"] = traj["r"] * (target / traj["r"].max())
    index = np.clip(np.arange(frames) - first + 1, 0, stop - first)
    return {k: np.asarray(v, dtype=np.float64)[index] for k, v in traj.items()}


def _place(rng: np.random.Generator, track: dict[str, np.ndarray], moving: np.ndarray,
           placed: list[tuple[dict[str, np.ndarray], np.ndarray]], size: int) -> dict[str, np.ndarray]:
    """Shift ``track`` (kept inside the frame) to the first of PLACEMENTS random places where it stays
    clear of the ``placed`` objects whenever neither moves (else the clearest place)."""
    lo = [float(np.max(track["r"] - track[k])) for k in ("cx", "cy")]
    hi = [float(np.min(size - track["r"] - track[k])) for k in ("cx", "cy")]
    shifts = np.stack([rng.uniform(lo[i], max(lo[i], hi[i]), PLACEMENTS) for i in range(2)], axis=1)
    clearance = np.full(PLACEMENTS, np.inf)
    for other, other_moving in placed:
        rest = ~(moving | other_moving)
        if rest.any():
            dx = track["cx"][rest][None] + shifts[:, :1] - other["cx"][rest][None]
            dy = track["cy"][rest][None] + shifts[:, 1:] - other["cy"][rest][None]
            gap = np.hypot(dx, dy) - track["r"][rest][None] - other["r"][rest][None]
            clearance = np.minimum(clearance, gap.min(axis=1))
    ok = np.flatnonzero(clearance >= CLEARANCE * size)
    best = int(ok[0]) if len(ok) else int(np.argmax(clearance))
    return {**track, "cx": track["cx"] + shifts[best, 0], "cy": track["cy"] + shifts[best, 1]}


def _boxes(track: dict[str, np.ndarray], size: int) -> list[list[float]]:
    """Per frame, the circumscribed square [x0, y0, x1, y1] as fractions of the side, clipped to the frame."""
    box = np.stack([track["cx"] - track["r"], track["cy"] - track["r"], track["cx"] + track["r"],
                    track["cy"] + track["r"]], axis=1)
    return np.round(np.clip(box / size, 0.0, 1.0), 4).tolist()


def query(rng: np.random.Generator, colour: str, shape: str, motion: str) -> str:
    """A sentence naming an object and its motion: "the red circle moving left", "a blue square growing"."""
    return pick(rng, QUERY_TEMPLATES).format(a=article(colour), colour=colour, shape=shape,
                                             motion=pick(rng, MOTION_PHRASES[motion]))


def article(word: str) -> str:
    """The indefinite article before ``word``: "a" or "an" ("an orange circle")."""
    return "an" if word[:1] in "aeiou" else "a"


def _caption(rng: np.random.Generator, cast: list[tuple[str, str]], motions: list[str]) -> str:
    """What happens, in order: "the red circle moves left, then the blue square grows" and the like."""
    definite = bool(rng.integers(2))
    said = [f"{'the' if definite else article(c)} {c} {s} {says(rng, m)}" for (c, s), m in zip(cast, motions)]
    style = int(rng.integers(3)) if len(said) > 1 else 0
    if style == 1:
        middle = "".join(f", then {x}" for x in said[1:-1])
        text = f"first {said[0]}{middle}, {'and finally' if len(said) > 2 else 'then'} {said[-1]}"
    else:
        text = (", then " if style == 0 else "; after that ").join(said)
    rng.random()  # (drawn before format 2, which names a still object in every caption: keeps the other draws)
    if len(cast) > len(motions):
        text += f", while the {cast[-1][0]} {cast[-1][1]} stays still"
    return text


def _draw(rng: np.random.Generator, cast: list[tuple[str, str]], tracks: list[dict[str, np.ndarray]],
          spans: list[tuple[int, int]], size: int, frames: int) -> np.ndarray:
    """The story's frames: objects at rest first, the moving one on top."""
    bg = background(rng)
    rgbs = [jitter_rgb(COLOURS[c], rng) for c, _ in cast]
    scenes = []
    for t in range(frames):
        mover = next((i for i, (a, b) in enumerate(spans) if a <= t < b), None)
        order = [i for i in range(len(cast)) if i != mover] + ([mover] if mover is not None else [])
        scenes.append([{"shape": cast[i][1], "rgb": rgbs[i], "marker": True,
                        **{k: float(v[t]) for k, v in tracks[i].items()}} for i in order])
    return render_frames(size, bg, scenes, rng)


def _layout(rng: np.random.Generator, motions: list[str | None], spans: list[tuple[int, int]], size: int,
            frames: int) -> list[dict[str, np.ndarray]]:
    """Placed tracks of the movers (in event order) and of the distractor (motion None, last)."""
    placed: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
    for motion, span in zip(motions, spans + [(0, 0)]):
        moving = np.zeros(frames, bool)
        moving[span[0]:span[1]] = True
        track = _place(rng, _track(rng, motion, span, size, frames), moving, placed, size)
        placed.append((track, moving))
    return [track for track, _ in placed]


def make_story(root: Path, cfg: Any, held: list[tuple[str, str]], split: str, k: int) -> dict[str, Any]:
    """Draw story ``k`` of ``split`` into ``root/stories/`` and return its stories.jsonl object (no questions)."""
    rng = np.random.default_rng([cfg.seed, 3, SPLITS.index(split), k])
    n = int(rng.integers(cfg.story_events[0], cfg.story_events[1] + 1))
    extra = bool(rng.random() < cfg.story_distractor)
    cast = _cast(rng, cfg, held, n, extra, split == "test" and bool(held) and k % 2 == 0)
    motions = [list(MOTIONS)[i] for i in rng.permutation(len(MOTIONS))[:n]]
    spans = _timeline(rng, n, cfg.story_frames)
    tracks = _layout(rng, [*motions, *([None] * extra)], spans, cfg.video_size, cfg.story_frames)
    path = f"stories/{split}_{k:03d}.mp4"
    write_video(root / path, _draw(rng, cast, tracks, spans, cfg.video_size, cfg.story_frames), cfg.video_fps)
    fps = cfg.video_fps
    events = [{"colour": c, "shape": s, "motion": m, "start": round(a / fps, 4), "end": round(b / fps, 4),
               "query": query(rng, c, s, m)} for (c, s), m, (a, b) in zip(cast, motions, spans)]
    objects = [{"colour": c, "shape": s, "moves": i < n, "boxes": _boxes(track, cfg.video_size)}
               for i, ((c, s), track) in enumerate(zip(cast, tracks))]
    return {"path": path, "split": split, "fps": fps, "frames": cfg.story_frames,
            "duration": round(cfg.story_frames / fps, 4), "caption": _caption(rng, cast, motions), "events": events,
            "objects": objects, "questions": [], "held_out": any(pair in held for pair in cast)}


def _draw_job(root: Path, cfg: Any, held: list[tuple[str, str]], job: tuple[str, int]) -> dict[str, Any]:
    return make_story(root, cfg, held, *job)


@contextmanager
def drawers(jobs: int) -> Iterator[ProcessPoolExecutor | None]:
    """Processes that draw stories side by side (one per CPU core, up to 8) when there are ``PARALLEL_STORIES``
    or more, else None (drawn here). Each story depends only on its split and number, so the files are the same."""
    workers = min(8, len(os.sched_getaffinity(0)))
    # forked, as torch's DataLoader workers are: spawned ones would re-run a caller's script that has no main guard
    if jobs < PARALLEL_STORIES or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        yield None
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield pool


def build_stories(root: Path, cfg: Any, held: list[tuple[str, str]],
                  progress: bool) -> dict[str, tuple[tuple[str, ...] | None, list[dict[str, Any]]]]:
    """Draw every story into ``root/stories/`` and return the manifests to write, by file name:
    ``(columns, rows)`` for a CSV, ``(None, objects)`` for a JSONL file."""
    from xmodal.engine.progress import progress as progress_bar

    stories, used = [], {split: {} for split in SPLITS}
    jobs = story_jobs(cfg)
    with drawers(len(jobs)) as pool:
        drawn = pool.map(partial(_draw_job, root, cfg, held), jobs, chunksize=16) if pool is not None \
            else (make_story(root, cfg, held, split, k) for split, k in jobs)
        for (split, k), story in progress_bar(zip(jobs, drawn), progress, desc="world stories", unit="story",
                                              total=len(jobs)):
            rng = np.random.default_rng([cfg.seed, 4, SPLITS.index(split), k])
            story["questions"] = ask(story, rng, used[split], cfg.colours, cfg.shapes)
            stories.append(story)
    flag = {True: "true", False: "false"}
    grounding = [{"path": s["path"], "duration": s["duration"], "split": s["split"], "held_out": flag[s["held_out"]],
                  **{key: e[key] for key in ("query", "start", "end", "colour", "shape", "motion")}}
                 for s in stories for e in s["events"]]
    captions = [{"path": s["path"], "caption": s["caption"], "split": s["split"], "held_out": flag[s["held_out"]]}
                for s in stories]
    qa = [{key: {**s, **q}[key] for key in QA_FIELDS} for s in stories for q in s["questions"]]
    return {"stories.jsonl": (None, stories), "grounding.csv": (GROUNDING_COLUMNS, grounding),
            "captions.csv": (CAPTION_COLUMNS, captions), "qa.jsonl": (None, qa)}
