"""Stories of the built-in world: untrimmed multi-event clips with grounding, captions, boxes and QA."""

from __future__ import annotations

import os

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodal.data.manifest import read_manifest as rows
from xmodal.experiments import preview
from xmodal.experiments.preview import read_clip
from xmodal.experiments.world import (STORY_FILES, WorldConfig, check_config, generate_world, held_out_combos,
                                      world_paths)
from xmodal.experiments.world_questions import COUNT_WORDS, KINDS
from xmodal.experiments.world_render import MOTION_PHRASES, twin
from xmodal.experiments.world_stories import event_bounds
from xmodal.errors import ConfigError
from xmodal.tasks.ground import GroundConfig, GroundTask

TINY = dict(colours=("red", "green", "blue", "yellow"), shapes=("circle", "square", "triangle", "star"),
            image_size=32, images_train=1, images_val=0, images_test=0, video_size=32, video_fps=8,
            clips_train=0, clips_val=0, clips_test=0, audio_sample_rate=8000,
            stories_train=8, stories_val=2, stories_test=8, story_frames=16)
MANIFESTS = ("stories.jsonl", "grounding.csv", "captions.csv", "qa.jsonl", "world.json")


def tiny(**changes) -> WorldConfig:
    return WorldConfig(**{**TINY, **changes})


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("stories") / "w", tiny(), progress=False)


@pytest.fixture(scope="module")
def stories(world) -> list[dict]:
    return rows(world / "stories.jsonl")


def frames_of(event: dict, fps: int) -> range:
    """The frames [first, stop) of an event from its times in seconds."""
    first, stop = event["start"] * fps, event["end"] * fps
    assert first == int(first) and stop == int(stop)  # times are frame boundaries
    return range(int(first), int(stop))


# ------------------------------------------------------------------ files, determinism, defaults
def test_same_seed_gives_identical_stories(tmp_path, world):
    again = generate_world(tmp_path / "again", tiny(), progress=False)
    clips = sorted(p.name for p in (world / "stories").iterdir())
    assert clips == [f"{s}_{k:03d}.mp4" for s, n in (("test", 8), ("train", 8), ("val", 2)) for k in range(n)]
    for name in [*MANIFESTS, *(f"stories/{c}" for c in clips)]:
        assert (world / name).read_bytes() == (again / name).read_bytes(), name
    other = generate_world(tmp_path / "other", tiny(seed=1), progress=False)
    assert (other / "stories.jsonl").read_bytes() != (world / "stories.jsonl").read_bytes()


def test_stories_drawn_by_several_processes_are_the_same_files(tmp_path, world, monkeypatch):
    from xmodal.experiments import world_stories

    monkeypatch.setattr(world_stories, "PARALLEL_STORIES", 1)
    with world_stories.drawers(2) as pool:
        assert pool is not None or len(os.sched_getaffinity(0)) < 2  # one core: drawn here
    again = generate_world(tmp_path / "again", tiny(), progress=False)
    for name in [*MANIFESTS, *(f"stories/{c.name}" for c in (world / "stories").iterdir())]:
        assert (world / name).read_bytes() == (again / name).read_bytes(), name


def test_default_world_has_no_stories(tmp_path):
    cfg = WorldConfig()
    assert (cfg.stories_train, cfg.stories_val, cfg.stories_test) == (0, 0, 0)
    root = generate_world(tmp_path / "w", tiny(stories_train=0, stories_val=0, stories_test=0), progress=False)
    assert not (root / "stories").exists() and not any((root / name).exists() for name in STORY_FILES.values())
    assert sorted(world_paths(root)) == ["images", "videos"]
    meta = json.loads((root / "world.json").read_text())
    assert "stories" not in meta["counts"] and "answers" not in meta


def test_world_paths_and_counts(world, stories):
    paths = world_paths(world)
    assert {k: p.name for k, p in paths.items() if k in STORY_FILES} == STORY_FILES
    assert all(p.is_file() for p in paths.values())
    meta = json.loads((world / "world.json").read_text())
    assert meta["counts"]["stories"] == {"train": 8, "val": 2, "test": 8}
    answers = {q["answer"] for s in stories for q in s["questions"]}
    assert meta["answers"] == sorted(answers)


def test_bad_story_settings():
    for bad in (dict(story_events=(0, 2)), dict(story_events=(3, 2)), dict(story_events=(2, 5)),
                dict(story_frames=4), dict(story_distractor=1.5), dict(stories_val=-1),
                dict(colours=("red", "green", "blue"))):  # 3 events + a distractor need 4 colours
        with pytest.raises(ConfigError):
            generate_world(Path("unused"), tiny(**bad), progress=False)
    check_config(tiny(colours=("red", "green"), stories_train=0, stories_val=0, stories_test=0))  # no stories


# ------------------------------------------------------------------ events, objects, boxes
def test_story_fields_and_objects(world, stories):
    for s in stories:
        assert list(s) == ["path", "split", "fps", "frames", "duration", "caption", "events", "objects",
                           "questions", "held_out"]
        assert (s["fps"], s["frames"], s["duration"]) == (8, 16, 2.0) and (world / s["path"]).is_file()
        assert 2 <= len(s["events"]) <= 3 and len(s["objects"]) in (len(s["events"]), len(s["events"]) + 1)
        objects = s["objects"]
        assert len({o["colour"] for o in objects}) == len({o["shape"] for o in objects}) == len(objects)
        assert [(o["colour"], o["shape"]) for o in objects if o["moves"]] == \
               [(e["colour"], e["shape"]) for e in s["events"]]
        assert len({e["motion"] for e in s["events"]}) == len(s["events"])
        for o in objects:
            boxes = np.array(o["boxes"])
            assert boxes.shape == (16, 4) and (boxes >= 0).all() and (boxes <= 1).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert any(len(s["objects"]) > len(s["events"]) for s in stories)  # some have a still distractor


def test_events_are_sequential_and_inside_the_clip(stories):
    shortest, longest, gap = event_bounds(16)
    for s in stories:
        spans = [frames_of(e, s["fps"]) for e in s["events"]]
        assert 0 <= spans[0].start and spans[-1].stop <= s["frames"]
        for a, b in zip(spans, spans[1:]):
            assert a.stop <= b.start <= a.stop + gap
        assert all(shortest <= len(r) <= longest for r in spans)


def test_movers_move_only_during_their_event(stories):
    for s in stories:
        movers = [o for o in s["objects"] if o["moves"]]
        for o in s["objects"]:
            step = np.abs(np.diff(np.array(o["boxes"]), axis=0)).max(axis=1)  # step[f - 1]: frame f - 1 -> f
            if not o["moves"]:
                assert (step == 0).all()
                continue
            event = s["events"][movers.index(o)]
            inside = np.isin(np.arange(1, 16), list(frames_of(event, s["fps"])))
            assert (step[~inside] == 0).all()  # still before and after its event
            if not event["motion"].startswith("rotating"):  # a turning object keeps its box
                assert (step[inside] > 0).all()


def test_the_video_changes_only_where_and_when_an_event_happens(world, stories):
    for s in stories:
        video = read_clip(world / s["path"]).astype(np.int16)
        assert video.shape == (16, 32, 32, 3)
        changed = np.abs(np.diff(video, axis=0)).max(axis=-1) > 20  # [15, H, W]: frame f - 1 -> f
        movers = [o for o in s["objects"] if o["moves"]]
        for f in range(1, 16):
            active = [i for i, e in enumerate(s["events"]) if f in frames_of(e, s["fps"])]
            if not active:  # noise and the codec's touch-ups only
                assert changed[f - 1].sum() < 8, (s["path"], f)
                continue
            assert changed[f - 1].sum() >= 8, (s["path"], f)  # something moves...
            boxes = np.array([movers[active[0]]["boxes"][f - 1], movers[active[0]]["boxes"][f]]) * 32
            x0, y0 = np.maximum(np.floor(boxes[:, :2].min(axis=0)).astype(int) - 2, 0)
            x1, y1 = np.ceil(boxes[:, 2:].max(axis=0)).astype(int) + 2
            assert changed[f - 1, y0:y1, x0:x1].sum() >= 0.7 * changed[f - 1].sum(), (s["path"], f)  # ...the mover


def test_held_out_combinations_only_in_test_stories(stories):
    held = {tuple(c) for c in held_out_combos(tiny())}
    for s in stories:
        pairs = {(o["colour"], o["shape"]) for o in s["objects"]}
        assert s["held_out"] == bool(pairs & held)
        if s["split"] != "test":
            assert not s["held_out"]
    test = [s for s in stories if s["split"] == "test"]
    assert sum(s["held_out"] for s in test) >= len(test) // 2
    for s in test[::2]:  # every other test story has a held-out mover
        assert {(e["colour"], e["shape"]) for e in s["events"]} & held


# ------------------------------------------------------------------ language: queries, captions, QA
def test_queries_and_captions_name_the_objects_in_order(stories):
    for s in stories:
        where = []
        for e in s["events"]:
            assert e["colour"] in e["query"] and e["shape"] in e["query"]
            assert any(p in e["query"] for p in MOTION_PHRASES[e["motion"]])
            where.append(s["caption"].index(f"{e['colour']} {e['shape']}"))
        assert where == sorted(where)
        still = [o for o in s["objects"] if not o["moves"]]  # a caption names every object, the still one last
        assert all(s["caption"].endswith(f"the {o['colour']} {o['shape']} stays still") for o in still)


def test_grounding_and_captions_match_the_stories(world, stories):
    grounding = rows(world / "grounding.csv")
    assert list(grounding[0]) == ["path", "query", "start", "end", "duration", "split", "colour", "shape",
                                  "motion", "held_out"]
    expected = [(s["path"], e["query"], e["start"], e["end"], s["duration"], s["split"], e["colour"], e["shape"],
                 e["motion"], str(s["held_out"]).lower()) for s in stories for e in s["events"]]
    assert [(r["path"], r["query"], float(r["start"]), float(r["end"]), float(r["duration"]), r["split"],
             r["colour"], r["shape"], r["motion"], r["held_out"]) for r in grounding] == expected
    # the ground task reads grounding.csv as it is; with one sampled frame per story frame its targets
    # are exactly the events' frames
    targets = GroundTask().targets(grounding, {"num_frames": 16}, GroundConfig(num_frames=16), "grounding.csv")
    spans = [frames_of(e, s["fps"]) for s in stories for e in s["events"]]
    assert targets["start_idx"].tolist() == [r.start for r in spans]
    assert targets["end_idx"].tolist() == [r.stop - 1 for r in spans]
    captions = rows(world / "captions.csv")
    assert [(r["path"], r["caption"], r["split"], r["held_out"]) for r in captions] == \
           [(s["path"], s["caption"], s["split"], str(s["held_out"]).lower()) for s in stories]


def test_questions(world, stories):
    qa = rows(world / "qa.jsonl")
    assert qa == [{"path": s["path"], **q, "split": s["split"], "held_out": s["held_out"]}
                  for s in stories for q in s["questions"]]
    assert list(qa[0]) == ["path", "question", "choices", "answer", "kind", "split", "held_out"]
    for s in stories:
        assert 2 <= len(s["questions"]) <= 4 and len({q["kind"] for q in s["questions"]}) == len(s["questions"])
        for q in s["questions"]:
            assert len(q["choices"]) == len(set(q["choices"])) == 4 and q["answer"] in q["choices"]
            if q["kind"] == "count_movers":
                assert q["answer"] == COUNT_WORDS[sum(o["moves"] for o in s["objects"]) - 1]
                assert sorted(q["choices"]) == sorted(COUNT_WORDS)
            elif q["kind"] == "first_event":
                assert q["answer"] == s["events"][0]["query"]
            elif q["kind"] == "motion_of":
                assert q["answer"] in MOTION_PHRASES and twin(q["answer"]) in q["choices"]
            elif q["kind"] == "after":
                i = next(i for i, e in enumerate(s["events"]) if e["query"] == q["answer"])
                assert i >= 1 and s["events"][i - 1]["colour"] in q["question"]
    for split in ("train", "test"):  # kinds balanced within a split
        kinds = Counter(q["kind"] for q in qa if q["split"] == split)
        assert set(kinds) == set(KINDS) and max(kinds.values()) - min(kinds.values()) <= 1


def test_preview_writes_a_story_strip(world, tmp_path, monkeypatch):
    for name in ("write_contact_sheet", "write_clips_gif", "write_clip_strip"):  # covered in test_preview.py
        monkeypatch.setattr(preview, name, lambda root, out: out)
    paths = preview.write_preview(world, tmp_path / "preview")
    assert [p.name for p in paths] == ["contact_sheet.png", "clips.gif", "clip_strip.png", "story_strip.png"]
    with Image.open(paths[-1]) as strip:
        assert strip.format == "PNG" and strip.size[0] > 1000 and strip.size[1] > 400


@pytest.mark.parametrize("events, distractor", [((1, 1), 1.0), ((4, 4), 0.0)])
def test_fewest_and_most_events(tmp_path, events, distractor):
    cfg = tiny(colours=TINY["colours"] + ("purple",), shapes=TINY["shapes"] + ("cross",), stories_train=3,
               stories_val=0, stories_test=2, story_events=events, story_distractor=distractor)
    for s in rows(generate_world(tmp_path / "w", cfg, progress=False) / "stories.jsonl"):
        assert len(s["events"]) == events[0] and len(s["objects"]) == events[0] + (distractor > 0)
        kinds = {q["kind"]: q for q in s["questions"]}
        if "count_movers" in kinds:
            assert kinds["count_movers"]["answer"] == COUNT_WORDS[events[0] - 1]
        if events[0] == 1:  # no order to ask about
            assert not {"first_event", "after"} & set(kinds)
