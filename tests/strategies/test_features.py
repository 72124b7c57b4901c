"""Out-of-core frozen transfer (strategies/features.py): clips whose features are stored are never decoded,
missing ones are decoded and encoded a batch at a time, and no run holds a split's pixels."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

import xmodal.modalities.video as video
from xmodal.data.manifest import read_manifest
from xmodal.engine.fit import FitConfig
from xmodal.strategies.base import VideoModel
from xmodal.strategies.train import TransferConfig, split_rows, transfer

BATCH = 4


def _cfg(store: str, **kw) -> TransferConfig:
    return TransferConfig(strategy="temporal_head", batch_size=BATCH, feature_store=store, **kw,
                          fit=FitConfig(epochs=2, lr=1e-2, monitor="val_top1", restore_best=True, progress=False, verbose=False))


@pytest.fixture
def events(monkeypatch) -> list[tuple[str, int]]:
    """Every clip decode ("decode", 1) and frozen-encoder call ("encode", clips), in order."""
    log: list[tuple[str, int]] = []
    load_clip, inputs = video.load_clip, VideoModel.inputs
    monkeypatch.setattr(video, "load_clip", lambda *a, **k: log.append(("decode", 1)) or load_clip(*a, **k))
    monkeypatch.setattr(VideoModel, "inputs", lambda vm, pixels: log.append(("encode", len(pixels))) or inputs(vm, pixels))
    return log


def _count(log: list[tuple[str, int]], kind: str) -> int:
    return sum(n for k, n in log if k == kind)


def _most_held(log: list[tuple[str, int]]) -> int:
    """The most clips decoded and not yet encoded at any moment (pixels held in RAM)."""
    held = most = 0
    for kind, n in log:
        held = held + n if kind == "decode" else max(0, held - n)
        most = max(most, held)
    return most


def _run(make_lit, manifest, store: str, log: list, **kw):
    log.clear()
    s = split_rows(read_manifest(manifest))
    res = transfer(make_lit(), s["train"], _cfg(store, **kw), s["val"], s["test"], root=manifest.parent)
    return res, _count(log, "decode"), _count(log, "encode")


def _quality(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("top1", "top5", "mean_class_accuracy", "features_encoded")}


def test_a_second_run_decodes_and_encodes_nothing_and_trains_alike(make_lit, video_manifest, events, tmp_path):
    clips = len({r["path"] for r in read_manifest(video_manifest)})
    first, decoded1, encoded1 = _run(make_lit, video_manifest, str(tmp_path / "store"), events)
    second, decoded2, encoded2 = _run(make_lit, video_manifest, str(tmp_path / "store"), events)
    assert (decoded1, encoded1) == (clips, clips) and (decoded2, encoded2) == (0, 0)
    assert second.metrics["features_encoded"] == 0 and _quality(first.metrics)["top1"] == _quality(second.metrics)["top1"]
    assert {k: v for k, v in _quality(first.metrics).items() if k != "features_encoded"} == \
        {k: v for k, v in _quality(second.metrics).items() if k != "features_encoded"}
    a, b = first.model.own_state(), second.model.own_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    memory, decoded3, _ = _run(make_lit, video_manifest, "", events)  # the in-memory path: the same training
    assert decoded3 == clips and all(torch.equal(a[k], memory.model.own_state()[k]) for k in a)
    assert second.metrics["throughput_clips_per_s"] > 0 and second.metrics["flops_per_clip"] == first.metrics["flops_per_clip"]


def test_one_new_file_is_the_only_clip_decoded(make_lit, video_manifest, events, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(video_manifest.parent, root)
    manifest = root / video_manifest.name
    _run(make_lit, manifest, str(tmp_path / "store"), events)
    frames = [np.zeros((16, 16, 3), np.uint8) for _ in range(6)]
    for t, f in enumerate(frames):
        f[2:6, t * 2: t * 2 + 4] = (250, 250, 250)  # a white square no other clip has
    video.write_video(root / "videos" / "new.mp4", frames)
    with manifest.open("a") as fh:
        fh.write("videos/new.mp4,moving right,a new square,train\n")
    res, decoded, encoded = _run(make_lit, manifest, str(tmp_path / "store"), events)
    assert (decoded, encoded, res.metrics["features_encoded"]) == (1, 1, 1)
    renamed = root / "videos" / "renamed.mp4"  # same content under another name: found by its content
    (root / "videos" / "new.mp4").rename(renamed)
    manifest.write_text(manifest.read_text().replace("videos/new.mp4", "videos/renamed.mp4"))
    assert _run(make_lit, manifest, str(tmp_path / "store"), events)[1:] == (0, 0)


def test_pixels_are_held_one_batch_at_a_time(make_lit, video_manifest, events, tmp_path):
    clips = len({r["path"] for r in read_manifest(video_manifest)})
    _run(make_lit, video_manifest, str(tmp_path / "store"), events)
    encodes = [n for k, n in events if k == "encode"]
    assert max(encodes) <= BATCH and _most_held(events) <= BATCH and sum(encodes) == clips
    _run(make_lit, video_manifest, "", events)  # without a store every split is decoded whole first
    assert _most_held(events) > BATCH


def test_unreadable_files_are_skipped_or_named(make_lit, video_manifest, events, tmp_path):
    from xmodal.errors import DataError

    root = tmp_path / "data"
    shutil.copytree(video_manifest.parent, root)
    manifest = root / video_manifest.name
    (root / "videos" / "broken.mp4").write_bytes(b"not a video")
    with manifest.open("a") as fh:
        fh.write("videos/broken.mp4,moving left,broken,train\nvideos/gone.mp4,moving left,gone,train\n")
    res, _, _ = _run(make_lit, manifest, str(tmp_path / "store"), events, on_error="skip")
    assert sorted(s["file"].rsplit("/", 1)[-1] for s in res.metrics["skipped"]) == ["broken.mp4", "gone.mp4"]
    assert res.metrics["features_encoded"] == 8  # 6 train + 2 val clips; the broken one encoded nothing
    with pytest.raises(DataError, match="gone.mp4"):
        _run(make_lit, manifest, str(tmp_path / "store"), events, on_error="raise")
