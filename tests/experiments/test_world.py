"""The built-in world: determinism, caching, held-out splits, temporal clips, sounds tied to the screen."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from xmodal.config import from_dict, to_dict
from xmodal.experiments import world as world_mod
from xmodal.experiments.world import (WorldConfig, class_names, generate_world, held_out_combos, motion_names,
                               world_paths)
from xmodal.experiments.world_audio import synthesize
from xmodal.experiments.world_render import MARKER_RGB, canonical_trajectory, render_clip, render_image
from xmodal.errors import ConfigError, DataError

TINY = dict(colours=("red", "green", "blue"), shapes=("circle", "square", "triangle"), image_size=32,
            images_train=3, images_val=1, images_test=2, video_frames=8, video_fps=8, video_size=32,
            clips_train=2, clips_val=1, clips_test=1, audio_sample_rate=8000)


def tiny(**changes) -> WorldConfig:
    return WorldConfig(**{**TINY, **changes})


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("world") / "w", tiny(), progress=False)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float64)


def centroids(video: np.ndarray) -> np.ndarray:
    """(x, y) per frame of the saturated (coloured) pixels: the object, not the grey background."""
    mask = (video.max(-1) - video.min(-1)) > 60
    ys, xs = np.mgrid[:video.shape[1], :video.shape[2]]
    return np.array([[(xs * m).sum() / m.sum(), (ys * m).sum() / m.sum()] for m in mask])


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ determinism and caching
def test_same_seed_gives_identical_worlds(tmp_path, world):
    again = generate_world(tmp_path / "again", tiny(), progress=False)
    a, b = all_files(world), all_files(again)
    assert sorted(a) == sorted(b)
    for name in ("images.csv", "videos.csv", "world.json"):
        assert a[name] == b[name]
    images = [n for n in a if n.startswith("images/")]
    assert images and all(a[n] == b[n] for n in images)
    assert all(a[n] == b[n] for n in a if n.startswith(("videos/", "audio/")))  # x264 made deterministic


def test_cached_world_is_not_rewritten(world):
    meta, image = world / "world.json", next((world / "images").iterdir())
    stamps = (meta.stat().st_mtime_ns, image.stat().st_mtime_ns)
    assert generate_world(world, tiny(), progress=False) == world
    assert (meta.stat().st_mtime_ns, image.stat().st_mtime_ns) == stamps


def test_changed_config_regenerates(tmp_path):
    root = generate_world(tmp_path / "w", tiny(clips_train=0, clips_val=0, clips_test=0), progress=False)
    first = (root / "images.csv").read_bytes()
    (root / "preview").mkdir()  # extra files of the old world go with it
    generate_world(root, tiny(seed=1, clips_train=0, clips_val=0, clips_test=0), progress=False)
    assert json.loads((root / "world.json").read_text())["config"]["seed"] == 1
    assert (root / "images.csv").read_bytes() != first
    assert not (root / "preview").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["w"]  # no temporary folders left behind


def test_interrupted_build_leaves_no_world(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(world_mod, "_make_clip_pair", boom)
    with pytest.raises(KeyboardInterrupt):
        generate_world(tmp_path / "w", tiny(), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_a_folder_that_is_not_a_world(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(DataError, match="refusing to overwrite"):
        generate_world(tmp_path / "mine", tiny(), progress=False)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"


def test_config_round_trip_and_bad_values():
    cfg = tiny()
    assert from_dict(WorldConfig, to_dict(cfg)) == cfg
    for bad in (dict(colours=("red", "mauve")), dict(shapes=("circle",)), dict(video_size=33),
                dict(images_train=-1), dict(sizes=()), dict(image_rotation=181.0), dict(image_rotation=-1.0)):
        with pytest.raises(ConfigError):
            generate_world(Path("unused"), tiny(**bad), progress=False)


# ------------------------------------------------------------------ images and held-out splits
def _marker_angle(pixels: np.ndarray) -> float | None:
    """Degrees clockwise from straight up of the orientation dot around the centre of a drawn circle
    (None: no dot)."""
    px = pixels.astype(float)
    dot = np.abs(px - np.array(MARKER_RGB)).max(axis=2) < 40
    body = (px.max(axis=2) - px.min(axis=2) > 60) | dot  # a saturated colour, on a light grey background
    if dot.sum() < 2:
        return None
    (by, bx), (dy, dx) = np.argwhere(body).mean(0), np.argwhere(dot).mean(0)
    return float(np.degrees(np.arctan2(dx - bx, by - dy)))


def test_image_objects_turn_as_far_as_image_rotation_and_carry_the_dot_only_when_asked():
    def draw(k: int, **kw) -> np.ndarray:
        return render_image("red", "circle", "large", "centre", np.random.default_rng(k), 64, **kw)

    assert all(_marker_angle(draw(k)) is None for k in range(5))  # the default: no dot, as older worlds drew
    upright = [_marker_angle(draw(k, rotation=20.0, marker=True)) for k in range(20)]
    anyway = [_marker_angle(draw(k, rotation=180.0, marker=True)) for k in range(40)]
    assert max(abs(a) for a in upright) < 30
    assert max(abs(a) for a in anyway) > 150 and sum(abs(a) > 90 for a in anyway) >= 10
    assert WorldConfig().image_rotation == 20.0 and not WorldConfig().image_marker  # older worlds' drawing


def test_default_config_holds_out_a_latin_square_diagonal():
    cfg = WorldConfig()
    held = held_out_combos(cfg)
    assert len(held) == 6 and len(class_names(cfg)) == 36
    assert len({c for c, _ in held}) == 6 and len({s for _, s in held}) == 6  # each held out exactly once
    seen = [(c, s) for c in cfg.colours for s in cfg.shapes if (c, s) not in held]
    assert {c for c, _ in seen} == set(cfg.colours) and {s for _, s in seen} == set(cfg.shapes)
    assert held_out_combos(WorldConfig(hold_out=False)) == []


def test_image_manifest_and_splits(world):
    cfg = tiny()
    images = rows(world_paths(world)["images"])
    assert list(images[0]) == ["path", "label", "caption", "split", "colour", "shape", "size", "position"]
    held = {f"{c} {s}" for c, s in held_out_combos(cfg)}
    assert held == {"red circle", "green square", "blue triangle"}
    by_split = {s: [r for r in images if r["split"] == s] for s in ("train", "val", "test_seen", "test_unseen")}
    assert not any(r["label"] in held for r in by_split["train"] + by_split["val"] + by_split["test_seen"])
    assert {r["label"] for r in by_split["test_unseen"]} == held
    assert {r["colour"] for r in by_split["train"]} == set(cfg.colours)
    assert {r["shape"] for r in by_split["train"]} == set(cfg.shapes)
    assert [len(by_split[s]) for s in by_split] == [6 * 3, 6 * 1, 6 * 2, 3 * 2]
    for r in images:
        assert r["label"] == f"{r['colour']} {r['shape']}"
        assert r["colour"] in r["caption"] and r["shape"] in r["caption"]
        assert (world / r["path"]).is_file()
    meta = json.loads((world / "world.json").read_text())
    assert meta["held_out"] == [list(c) for c in held_out_combos(cfg)] and meta["config"] == to_dict(cfg)


def test_images_show_their_colour(world):
    from PIL import Image

    for r in rows(world_paths(world)["images"])[:12]:
        pixels = np.asarray(Image.open(world / r["path"]).convert("RGB")).reshape(-1, 3).astype(int)
        assert pixels.shape[0] == 32 * 32
        obj = pixels[(pixels.max(1) - pixels.min(1)) > 60]
        assert len(obj) > 10
        assert int(np.argmax(obj.mean(0))) == {"red": 0, "green": 1, "blue": 2}[r["colour"]]


# ------------------------------------------------------------------ clips: temporal classes
def test_video_manifest(world):
    videos = rows(world_paths(world)["videos"])
    assert list(videos[0]) == ["path", "audio", "label", "caption", "split", "colour", "shape", "motion"]
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        mine = [r for r in videos if r["split"] == split]
        assert sorted(r["label"] for r in mine) == sorted(motion_names() * n)
    with av.open(str(world / videos[0]["path"])) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 32, 32)
        assert stream.codec_context.pix_fmt == "yuv420p" and stream.average_rate == 8
        assert sum(1 for _ in container.decode(video=0)) == 8


def test_motions_move_the_right_way(world):
    videos = rows(world_paths(world)["videos"])
    for r in videos:
        c = centroids(decode(world / r["path"]))
        dx, dy = c[-1] - c[0]
        steps = np.diff(c, axis=0)
        if r["motion"] == "moving left":
            assert dx < -5 and (steps[:, 0] < 0).all()
        elif r["motion"] == "moving right":
            assert dx > 5 and (steps[:, 0] > 0).all()
        elif r["motion"] == "moving up":
            assert dy < -5 and (steps[:, 1] < 0).all()
        elif r["motion"] == "moving down":
            assert dy > 5 and (steps[:, 1] > 0).all()


def test_reversal_gives_the_opposite_motion_and_same_mean_frame(world):
    seed = [7, 7]
    left, ltraj = render_clip("red", "star", "moving left", np.random.default_rng(seed), 32, 8)
    right, rtraj = render_clip("red", "star", "moving right", np.random.default_rng(seed), 32, 8)
    np.testing.assert_array_equal(left, right[::-1])
    np.testing.assert_array_equal(ltraj["cx"], rtraj["cx"][::-1])
    cw, _ = render_clip("blue", "cross", "rotating clockwise", np.random.default_rng(seed), 32, 8)
    ccw, _ = render_clip("blue", "cross", "rotating counterclockwise", np.random.default_rng(seed), 32, 8)
    np.testing.assert_array_equal(cw, ccw[::-1])
    # in the world: the per-class mean frames of left and right are close, the trajectories are not
    videos = rows(world_paths(world)["videos"])
    clips = {m: [decode(world / r["path"]) for r in videos if r["motion"] == m]
             for m in ("moving left", "moving right")}
    mean = {m: np.mean([v.mean(0) for v in vs], axis=0) for m, vs in clips.items()}
    assert np.abs(mean["moving left"] - mean["moving right"]).mean() < 1.5
    dx = {m: np.mean([centroids(v)[-1, 0] - centroids(v)[0, 0] for v in vs]) for m, vs in clips.items()}
    assert dx["moving left"] < -5 < 5 < dx["moving right"]


def test_rotation_and_growth_trajectories():
    rot = canonical_trajectory("rotating clockwise", np.random.default_rng(0), 64, 16)
    step = np.diff(rot["theta"])
    assert (step > 0).all() and (step < np.pi).all()  # clockwise on screen, never ambiguous
    grow = canonical_trajectory("growing", np.random.default_rng(0), 64, 16)
    assert (np.diff(grow["r"]) > 0).all()
    assert (grow["cx"] - grow["r"] >= -1e-9).all() and (grow["cx"] + grow["r"] <= 64 + 1e-9).all()


# ------------------------------------------------------------------ audio
def test_audio_files_match_clips(world):
    for r in rows(world_paths(world)["videos"]):
        info = sf.info(str(world / r["audio"]))
        assert info.samplerate == 8000 and info.channels == 1 and info.subtype == "PCM_16"
        assert info.frames == 8000  # 8 frames at 8 fps = 1 s
    wave, _ = sf.read(str(world / r["audio"]))
    assert 0.05 < np.abs(wave).max() < 1.0


def _sound(shape="circle", colour="red", motion="moving right", seed=0, rate=16000):
    _, traj = render_clip(colour, shape, motion, np.random.default_rng(seed), 64, 16)
    return synthesize(shape, colour, motion, traj, 64, 8, rate, np.random.default_rng(0))


def _spectrum(wave: np.ndarray, rate: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    mid = wave[len(wave) // 4: 3 * len(wave) // 4]  # skip the onset hit
    mag = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    return np.fft.rfftfreq(len(mid), 1 / rate), mag / mag.sum()


def test_shapes_sound_different_and_colours_set_the_pitch():
    spectra = {s: _spectrum(_sound(s)) for s in ("circle", "square", "star", "cross")}
    centroid = {s: float((f * m).sum()) for s, (f, m) in spectra.items()}
    assert centroid["star"] > 1.5 * centroid["circle"]
    names = list(spectra)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(spectra[a][1] - spectra[b][1]).sum() > 0.3, (a, b)
    for colour, hz in (("red", 196.0), ("blue", 392.0)):  # no glide while growing: the base pitch
        freqs, mag = _spectrum(_sound("circle", colour, "growing"))
        assert abs(freqs[np.argmax(mag)] - hz) < 5


def test_sound_follows_motion_and_size():
    def pitch(wave, part):
        n = len(wave) // 3
        seg = wave[part * n:(part + 1) * n]
        f = np.fft.rfftfreq(len(seg), 1 / 16000)
        return f[np.argmax(np.abs(np.fft.rfft(seg * np.hanning(len(seg)))))]

    right, left = _sound(motion="moving right"), _sound(motion="moving left")
    assert pitch(right, 2) > pitch(right, 0) and pitch(left, 2) < pitch(left, 0)
    grow, shrink = _sound(motion="growing"), _sound(motion="shrinking")
    rms = lambda w, part: float(np.sqrt(np.mean(w[part * len(w) // 3:(part + 1) * len(w) // 3] ** 2)))  # noqa: E731
    assert rms(grow, 2) > 1.5 * rms(grow, 0) and rms(shrink, 0) > 1.5 * rms(shrink, 2)
    assert len(right) == 2 * 16000


def test_generation_progress_bars_show_only_on_a_terminal_or_when_forced(tmp_path, capsys, monkeypatch):
    cfg = tiny(images_train=1, images_val=0, images_test=0, clips_train=0, clips_val=0, clips_test=1)
    monkeypatch.delenv("XMODAL_PROGRESS", raising=False)
    generate_world(tmp_path / "quiet", cfg, progress=True)  # stderr is captured, not a terminal
    assert "world images" not in capsys.readouterr().err
    monkeypatch.setenv("XMODAL_PROGRESS", "1")
    generate_world(tmp_path / "w", cfg, progress=True)
    assert "world images" in capsys.readouterr().err
    assert os.path.isfile(tmp_path / "w" / "world.json")
