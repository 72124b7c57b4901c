"""The built-in world: a seeded, cached, multimodal dataset of coloured shapes, made in seconds.

``generate_world(root, cfg)`` writes, in the same manifest form users' data takes:

* ``images.csv`` + ``images/*.png``: one coloured shape per image; label ``"<colour> <shape>"``;
  splits ``train``, ``val``, ``test_seen`` (seen combinations) and ``test_unseen`` (colour-shape
  combinations held out of training, named only in words: see :func:`held_out_combos`);
* ``videos.csv`` + ``videos/*.mp4`` + ``audio/*.wav``: one shape per clip doing one of 8 motions whose
  identity depends on the order of frames (every clip of a motion has a twin of the opposite motion
  that is exactly its time reversal, so the average frame cannot tell them apart); a sound per clip
  tied to what happens on screen (see :mod:`xmodal.experiments.world_audio`); splits ``train``/``val``/``test``;
* only when ``stories_train/val/test`` > 0 (0 by default), stories: untrimmed clips
  ``stories/<split>_<k>.mp4`` in which 1-4 shapes act one after another, with a shape that never moves
  in about half (see :mod:`xmodal.experiments.world_stories`), and their annotations, paths relative
  to the world folder: ``stories.jsonl`` (one object per story: path, split, fps, frames, duration,
  caption, events with colour/shape/motion/start/end/query, objects with colour/shape/moves/boxes per
  frame, questions, held_out), ``grounding.csv`` (one row per event: path, query, start, end,
  duration, split, colour, shape, motion, held_out), ``captions.csv`` (one row per story: path,
  caption, split, held_out) and ``qa.jsonl`` (one row per question: path, question, 4 choices, answer,
  kind, split, held_out; see :mod:`xmodal.experiments.world_questions`); held-out combinations appear
  only in test stories (every other one);
* ``world.json``: the configuration, format version, held-out combinations and counts (and, with
  stories, ``answers``: the sorted answers of all questions, for open-ended QA).

The same seed gives byte-identical files (manifests, images, clips, sounds). A world whose
``world.json`` matches the configuration is reused; otherwise it is rebuilt in a temporary sibling
folder and swapped in, so an interrupted run never leaves a half world that looks complete.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from xmodal.config import to_dict
from xmodal.experiments import world_audio, world_render, world_stories
from xmodal.experiments.world_render import (COLOURS, MOTION_PHRASES, MOTIONS, POSITIONS, SHAPES, SIZES, pick,
                                             twin)
from xmodal.errors import ConfigError, DataError
from xmodal.modalities.audio import write_wav
from xmodal.modalities.video import write_video

FORMAT_VERSION = 2  # 2: a caption names the still object of its story whenever there is one
IMAGE_SPLITS = ("train", "val", "test_seen", "test_unseen")
VIDEO_SPLITS = ("train", "val", "test")
IMAGE_COLUMNS = ("path", "label", "caption", "split", "colour", "shape", "size", "position")
VIDEO_COLUMNS = ("path", "audio", "label", "caption", "split", "colour", "shape", "motion")
WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
         "centre": "in the centre"}
NEAR = {"left": "near the left edge", "right": "near the right edge", "top": "near the top",
        "bottom": "near the bottom", "centre": "near the middle"}
IMAGE_TEMPLATES = (
    "a {colour} {shape}", "a {size} {colour} {shape} {where}", "a picture of a {size} {colour} {shape} {where}",
    "there is a {colour} {shape} {near}", "a {colour}-coloured {shape}", "a photo of a {size} {colour} {shape}",
    "a {size} {shape}, coloured {colour}", "a {colour} {shape} {where}", "an image showing a {colour} {shape}",
)
VIDEO_TEMPLATES = ("a {colour} {shape} {motion}", "a video of a {colour} {shape} {motion}",
                   "the {colour} {shape} is {motion}", "a clip of a {shape} in {colour}, {motion}")
STORY_FILES = {"stories": "stories.jsonl", "grounding": "grounding.csv", "captions": "captions.csv",
               "qa": "qa.jsonl"}  # the story manifests, by world_paths key
STALE_SECONDS = 600  # temporary build folders older than this are left-overs of killed runs


@dataclass
class WorldConfig:
    seed: int = 0  # random seed: the same seed gives byte-identical files
    image_size: int = 64  # side of the square images, pixels
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")  # object colours
    shapes: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")  # object shapes
    sizes: tuple[str, ...] = ("small", "large")  # object sizes in images (small / medium / large)
    positions: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")  # object places in images
    image_rotation: float = 20.0  # largest turn of an image's object either way, degrees (clips and stories turn
    # theirs any way: 180 shows images' objects as they do)
    image_marker: bool = False  # draw the clips' orientation dot on image objects too (as clips and stories do)
    hold_out: bool = True  # hold combos (i, j) with (i - j) % len(shapes) == 0 out of train/val
    images_train: int = 100  # train images per seen colour-shape combination
    images_val: int = 5  # val images per seen combination
    images_test: int = 10  # test images per combination (test_seen; test_unseen for held-out ones)
    video_frames: int = 16  # frames per clip
    video_fps: int = 8  # frames per second (clip length = video_frames / video_fps seconds)
    video_size: int = 64  # side of the square clips, pixels (even)
    clips_train: int = 16  # train clips per motion class (8 classes)
    clips_val: int = 4  # val clips per motion class
    clips_test: int = 8  # test clips per motion class
    audio_sample_rate: int = 16000  # Hz, 16-bit mono WAV per clip
    stories_train: int = 0  # train stories (untrimmed clips of several events); 0: no stories
    stories_val: int = 0  # val stories
    stories_test: int = 0  # test stories (every other one shows a held-out combination)
    story_frames: int = 32  # frames per story, at video_fps (32 at 8 fps: 4 s)
    story_events: tuple[int, int] = (2, 3)  # fewest and most events per story (1..4)
    story_distractor: float = 0.5  # probability that a story has one more object that never moves


def check_config(cfg: WorldConfig) -> None:
    """Raise a ConfigError naming the first impossible setting."""
    for name, values, known in (("colours", cfg.colours, COLOURS), ("shapes", cfg.shapes, SHAPES),
                                ("sizes", cfg.sizes, SIZES), ("positions", cfg.positions, POSITIONS)):
        if not values:
            raise ConfigError(f"WorldConfig.{name}: needs at least one value")
        unknown = [v for v in values if v not in known]
        if unknown:
            raise ConfigError(f"WorldConfig.{name}: unknown {unknown}; known: {sorted(known)}")
        if len(set(values)) != len(values):
            raise ConfigError(f"WorldConfig.{name}: repeated values in {list(values)}")
    if cfg.hold_out and (len(cfg.colours) < 2 or len(cfg.shapes) < 2):
        raise ConfigError("WorldConfig.hold_out: needs at least 2 colours and 2 shapes "
                          "(every colour and shape must still be seen in training)")
    counts = ("images_train", "images_val", "images_test", "clips_train", "clips_val", "clips_test",
              "stories_train", "stories_val", "stories_test")
    for name in counts:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"WorldConfig.{name}: must be >= 0, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.image_rotation <= 180.0:
        raise ConfigError(f"WorldConfig.image_rotation: degrees in [0, 180], got {cfg.image_rotation}")
    if cfg.image_size < 16 or cfg.video_size < 16 or cfg.video_size % 2:
        raise ConfigError(f"WorldConfig: image_size and video_size must be >= 16 and video_size even "
                          f"(H.264 yuv420p), got {cfg.image_size} and {cfg.video_size}")
    if cfg.video_frames < 2 or cfg.video_fps < 1:
        raise ConfigError(f"WorldConfig: need video_frames >= 2 and video_fps >= 1, "
                          f"got {cfg.video_frames} and {cfg.video_fps}")
    if not 1000 <= cfg.audio_sample_rate <= 192000:
        raise ConfigError(f"WorldConfig.audio_sample_rate: expected 1000..192000 Hz, got {cfg.audio_sample_rate}")
    _check_stories(cfg)


def _check_stories(cfg: WorldConfig) -> None:
    events = tuple(cfg.story_events)
    if len(events) != 2 or not 1 <= events[0] <= events[1] <= 4:
        raise ConfigError(f"WorldConfig.story_events: expected (fewest, most) with 1 <= fewest <= most <= 4, "
                          f"got {cfg.story_events}")
    if cfg.story_frames < 8:
        raise ConfigError(f"WorldConfig.story_frames: must be >= 8, got {cfg.story_frames}")
    if not 0.0 <= cfg.story_distractor <= 1.0:
        raise ConfigError(f"WorldConfig.story_distractor: a probability in [0, 1], got {cfg.story_distractor}")
    objects = events[1] + (cfg.story_distractor > 0)
    if has_stories(cfg) and objects > min(len(cfg.colours), len(cfg.shapes)):
        raise ConfigError(f"WorldConfig: stories of up to {objects} objects (story_events, story_distractor) "
                          f"need as many colours and shapes, got {len(cfg.colours)} and {len(cfg.shapes)}")


def has_stories(cfg: WorldConfig) -> bool:
    """True when ``cfg`` asks for stories (and so for their manifests)."""
    return cfg.stories_train + cfg.stories_val + cfg.stories_test > 0


def class_names(cfg: WorldConfig) -> list[str]:
    """All colour-shape labels, colour-major: ``["red circle", "red square", ...]``."""
    return [f"{c} {s}" for c in cfg.colours for s in cfg.shapes]


def held_out_combos(cfg: WorldConfig) -> list[tuple[str, str]]:
    """(colour, shape) pairs never in train/val: a Latin-square diagonal, so every colour and every
    shape is still seen in training with other partners."""
    if not cfg.hold_out:
        return []
    n = len(cfg.shapes)
    return [(c, s) for i, c in enumerate(cfg.colours) for j, s in enumerate(cfg.shapes) if (i - j) % n == 0]


def motion_names() -> list[str]:
    """The 8 motion classes of the clips, in a fixed order."""
    return list(MOTIONS)


def world_paths(root: str | Path) -> dict[str, Path]:
    """The manifests of a world: ``{"images": root/images.csv, "videos": root/videos.csv}``, and for a
    world with stories (``root/stories.jsonl`` exists) also ``"stories"``, ``"grounding"``,
    ``"captions"`` and ``"qa"`` (see STORY_FILES); without stories those keys are absent."""
    root = Path(root)
    return _manifests(root, (root / STORY_FILES["stories"]).is_file())


def _manifests(root: Path, stories: bool) -> dict[str, Path]:
    paths = {"images": root / "images.csv", "videos": root / "videos.csv"}
    return {**paths, **{key: root / name for key, name in STORY_FILES.items()}} if stories else paths


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)


def _image_jobs(cfg: WorldConfig) -> list[tuple[str, int, int, int]]:
    """(split, colour index, shape index, item) of every image, in manifest order."""
    held = set(held_out_combos(cfg))
    per_split = {"train": cfg.images_train, "val": cfg.images_val, "test_seen": cfg.images_test,
                 "test_unseen": cfg.images_test}
    jobs = []
    for split in IMAGE_SPLITS:
        for ci, colour in enumerate(cfg.colours):
            for si, shape in enumerate(cfg.shapes):
                if ((colour, shape) in held) == (split == "test_unseen"):
                    jobs += [(split, ci, si, k) for k in range(per_split[split])]
    return jobs


def _make_image(root: Path, cfg: WorldConfig, job: tuple[str, int, int, int]) -> dict[str, Any]:
    split, ci, si, k = job
    rng = np.random.default_rng([cfg.seed, 1, IMAGE_SPLITS.index(split), ci, si, k])
    colour, shape = cfg.colours[ci], cfg.shapes[si]
    size, position = pick(rng, cfg.sizes), pick(rng, cfg.positions)
    caption = pick(rng, IMAGE_TEMPLATES).format(colour=colour, shape=shape, size=size, where=WHERE[position],
                                                 near=NEAR[position])
    path = f"images/{split}_{colour}_{shape}_{k:03d}.png"
    pixels = world_render.render_image(colour, shape, size, position, rng, cfg.image_size, cfg.image_rotation,
                                       cfg.image_marker)
    Image.fromarray(pixels).save(root / path, optimize=False)
    return {"path": path, "label": f"{colour} {shape}", "caption": caption, "split": split, "colour": colour,
            "shape": shape, "size": size, "position": position}


def _clip_jobs(cfg: WorldConfig) -> list[tuple[str, int, int]]:
    """(split, canonical motion index, item) of every clip pair (a motion and its reversal)."""
    per_split = {"train": cfg.clips_train, "val": cfg.clips_val, "test": cfg.clips_test}
    return [(split, m, k) for split in VIDEO_SPLITS for m in range(len(world_render.CANONICAL))
            for k in range(per_split[split])]


def _clip_row(root: Path, cfg: WorldConfig, split: str, k: int, motion: str, colour: str, shape: str,
              video: np.ndarray, traj: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, Any]:
    stem = f"{split}_{motion.replace(' ', '_')}_{k:03d}"
    write_video(root / "videos" / f"{stem}.mp4", video, cfg.video_fps)
    wave = world_audio.synthesize(shape, colour, motion, traj, cfg.video_size, cfg.video_fps,
                                  cfg.audio_sample_rate, rng)
    write_wav(root / "audio" / f"{stem}.wav", wave, cfg.audio_sample_rate)
    caption = pick(rng, VIDEO_TEMPLATES).format(colour=colour, shape=shape, motion=pick(rng, MOTION_PHRASES[motion]))
    return {"path": f"videos/{stem}.mp4", "audio": f"audio/{stem}.wav", "label": motion, "caption": caption,
            "split": split, "colour": colour, "shape": shape, "motion": motion}


def _make_clip_pair(root: Path, cfg: WorldConfig, job: tuple[str, int, int]) -> list[dict[str, Any]]:
    """A clip of a canonical motion and its exact time reversal (the opposite motion), with sounds."""
    split, m, k = job
    rng = np.random.default_rng([cfg.seed, 2, VIDEO_SPLITS.index(split), m, k])
    colour, shape = pick(rng, cfg.colours), pick(rng, cfg.shapes)
    forward = world_render.CANONICAL[m]
    backward = twin(forward)
    video, traj = world_render.render_clip(colour, shape, forward, rng, cfg.video_size, cfg.video_frames)
    rows = [_clip_row(root, cfg, split, k, forward, colour, shape, video, traj, rng)]
    video, traj = world_render.reverse_clip(video, traj)
    rows.append(_clip_row(root, cfg, split, k, backward, colour, shape, video, traj, rng))
    return rows


def _order_clips(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Manifest order: split, then motion class (MOTIONS order), then item."""
    order = {name: i for i, name in enumerate(MOTIONS)}
    return sorted(rows, key=lambda r: (VIDEO_SPLITS.index(r["split"]), order[r["motion"]], r["path"]))


def _meta(cfg: WorldConfig, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = {"format": FORMAT_VERSION, "config": to_dict(cfg),
            "held_out": [list(c) for c in held_out_combos(cfg)], "classes": class_names(cfg),
            "motions": motion_names()}
    if counts is not None:
        meta["counts"] = counts
    return meta


def _is_current(root: Path, cfg: WorldConfig) -> bool:
    """True when ``root`` holds a complete world made with exactly ``cfg`` by this format version."""
    try:
        meta = json.loads((root / "world.json").read_text())
    except (OSError, ValueError):
        return False
    expected = _meta(cfg)
    same = isinstance(meta, dict) and all(meta.get(k) == v for k, v in expected.items())
    return same and all(p.is_file() for p in _manifests(root, has_stories(cfg)).values())


def _tally(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Rows per split, in order of first appearance."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["split"]] = counts.get(r["split"], 0) + 1
    return counts


def _build(tmp: Path, cfg: WorldConfig, progress: bool) -> None:
    """Write a whole world into ``tmp`` (world.json last)."""
    from xmodal.engine.progress import progress as progress_bar

    for sub in ("images", "videos", "audio"):
        (tmp / sub).mkdir(parents=True)
    images = [_make_image(tmp, cfg, job)
              for job in progress_bar(_image_jobs(cfg), progress, desc="world images", unit="img")]
    _write_csv(tmp / "images.csv", IMAGE_COLUMNS, images)
    videos = [row for job in progress_bar(_clip_jobs(cfg), progress, desc="world clips", unit="pair")
              for row in _make_clip_pair(tmp, cfg, job)]
    videos = _order_clips(videos)
    _write_csv(tmp / "videos.csv", VIDEO_COLUMNS, videos)
    meta = _meta(cfg, {"images": _tally(images), "videos": _tally(videos)})
    if has_stories(cfg):
        meta["counts"]["stories"], meta["answers"] = _build_stories(tmp, cfg, progress)
    (tmp / "world.json").write_text(json.dumps(meta, indent=2) + "\n")


def _build_stories(tmp: Path, cfg: WorldConfig, progress: bool) -> tuple[dict[str, int], list[str]]:
    """Draw the stories and write their manifests; return their counts per split and the answers."""
    tables = world_stories.build_stories(tmp, cfg, held_out_combos(cfg), progress)
    for name, (columns, rows) in tables.items():
        if columns is None:
            _write_jsonl(tmp / name, rows)
        else:
            _write_csv(tmp / name, columns, rows)
    qa = tables[STORY_FILES["qa"]][1]
    return _tally(tables[STORY_FILES["stories"]][1]), sorted({q["answer"] for q in qa})


def _check_replaceable(root: Path) -> None:
    """Refuse to replace a folder that is not an xmodal world (a user's files)."""
    if root.exists() and not root.is_dir():
        raise DataError(root, "exists and is not a folder; cannot build a world there")
    if root.is_dir() and any(root.iterdir()) and not (root / "world.json").is_file():
        raise DataError(root, "folder exists, is not empty and holds no world.json; "
                              "refusing to overwrite it with a world (choose another folder)")


def _remove_stale(root: Path) -> None:
    """Delete temporary build folders of killed runs (old enough not to belong to a running one)."""
    for old in root.parent.glob(f".{root.name}.build-*"):
        try:
            if time.time() - old.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def _swap_in(tmp: Path, root: Path) -> None:
    """Replace ``root`` by the finished ``tmp`` with renames (the old world is deleted afterwards)."""
    old = None
    if root.exists():
        old = root.parent / f".{root.name}.build-old-{uuid.uuid4().hex[:8]}"
        os.replace(root, old)
    os.replace(tmp, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def generate_world(root: str | Path, cfg: WorldConfig | None = None, progress: bool = True) -> Path:
    """Build the built-in world in ``root`` (or reuse it if ``root/world.json`` matches ``cfg``).

    Returns ``root``; its manifests are :func:`world_paths` ``(root)``. Deterministic: the same seed
    gives byte-identical manifests, images, clips and sounds (with the same Pillow / FFmpeg builds)."""
    cfg = WorldConfig() if cfg is None else cfg
    check_config(cfg)
    root = Path(root)
    if _is_current(root, cfg):
        return root
    target = Path(os.path.abspath(root))  # a name and a parent even for "."
    _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    tmp = target.parent / f".{target.name}.build-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _build(tmp, cfg, progress)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
