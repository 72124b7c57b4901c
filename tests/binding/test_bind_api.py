"""Binding audio to a frozen image tower: only the new tower trains, the anchor is cached, the bound
model reloads with xmodal.load, and audio works with zero-shot and retrieval."""

from __future__ import annotations

import pytest
import torch

import xmodal
from xmodal.alignment.train import AlignConfig
from xmodal.binding.train import BindConfig, bind
from xmodal.data.manifest import read_manifest
from xmodal.engine.fit import FitConfig
from xmodal.errors import ConfigError
from xmodal.tasks.embed import embed

AUDIO_SPEC = {"sample_rate": 8000, "n_mels": 16, "n_fft": 128, "hop_length": 64, "max_seconds": 0.25}


def _cfg(**kw) -> BindConfig:
    fit = FitConfig(epochs=3, lr=3e-3, progress=False, verbose=False)
    return BindConfig(encoder_config={"width": 8, "depth": 2}, spec=AUDIO_SPEC,
                      align=AlignConfig(label_column="", batch_size=4, fit=fit), **kw)


def test_bind_trains_only_the_new_tower_and_reloads(tiny_lit, tiny_av, tmp_path) -> None:
    rows = read_manifest(tiny_av)
    before = {k: v.clone() for k, v in tiny_lit.state_dict().items()}
    res = bind(tiny_lit, rows, _cfg(), val_rows=rows[:4], root=tiny_av.parent, out=tmp_path / "run")
    model = res.model
    assert model.backbone == "bound" and "audio" in model.modalities
    assert res.cached == {"image": len(rows)}  # the frozen anchor was encoded once
    for k, v in before.items():  # the base model did not move, nor did the towers the bound model shares with it
        assert torch.equal(tiny_lit.state_dict()[k], v), k
        assert k.startswith("logit_") or torch.equal(model.state_dict()[k], v), k
    assert model.logit_scale.item() != tiny_lit.logit_scale.item()  # the bound model's own temperature trained
    assert "val_R@1" in res.history.epochs[-1]
    again = xmodal.load(tmp_path / "run" / "model").eval()
    assert again.backbone == "bound" and again.spec("audio").sample_rate == AUDIO_SPEC["sample_rate"]
    a = embed(model.eval(), "audio", [r["audio"] for r in rows], root=tiny_av.parent, progress=False).vectors
    b = embed(again, "audio", [r["audio"] for r in rows], root=tiny_av.parent, progress=False).vectors
    assert torch.allclose(a, b, atol=1e-5)
    zs = xmodal.zeroshot(again, [r["audio"] for r in rows], [r["label"] for r in rows], modality="audio",
                         root=tiny_av.parent, progress=False)
    assert len(zs.targets) == len(rows)


def test_bind_a_second_modality_keeps_the_first(tiny_lit, tiny_av, tmp_path) -> None:
    rows = read_manifest(tiny_av)
    first = bind(tiny_lit, rows, _cfg(), root=tiny_av.parent).model
    with pytest.raises(ConfigError, match="already has"):
        bind(first, rows, _cfg(), root=tiny_av.parent)


def test_bind_checks_encoder_modality_and_anchor(tiny_lit, tiny_av) -> None:
    rows = read_manifest(tiny_av)
    with pytest.raises(ConfigError, match="reads series"):
        bind(tiny_lit, rows, BindConfig(encoder="series_cnn"), root=tiny_av.parent)
    with pytest.raises(ConfigError, match="unknown modality 'depth'"):
        bind(tiny_lit, rows, _cfg(anchor="depth"), root=tiny_av.parent)


def test_bind_to_video_frames_caches_clips(tiny_lit, tmp_path) -> None:
    from xmodal.experiments.world import WorldConfig, generate_world, world_paths

    cfg = WorldConfig(colours=("red", "green"), shapes=("circle", "square"), image_size=32, images_train=1, images_val=0,
                      images_test=0, video_frames=4, video_size=32, clips_train=1, clips_val=0, clips_test=0,
                      audio_sample_rate=8000)
    root = generate_world(tmp_path / "w", cfg)
    manifest = world_paths(root)["videos"]
    rows = read_manifest(manifest)
    res = bind(tiny_lit, rows, _cfg(anchor="video", columns=("audio", "path")), root=manifest.parent)
    assert res.cached == {"video": len(rows)}



def test_skip_also_skips_a_bad_anchor_file_and_names_it(tiny_lit, tiny_av, tmp_path) -> None:
    import shutil

    from xmodal.errors import DataError

    root = shutil.copytree(tiny_av.parent, tmp_path / "av")
    rows = read_manifest(root / tiny_av.name)
    (root / rows[1]["image"]).write_bytes(b"not a png")  # the anchor of row 1
    (root / rows[2]["audio"]).write_bytes(b"not a wav")  # the new modality of row 2
    with pytest.raises(DataError, match=rows[1]["image"]):
        bind(tiny_lit, rows, _cfg(), root=root)
    cfg = _cfg()
    cfg.align.on_error = "skip"
    res = bind(tiny_lit, rows, cfg, val_rows=rows[:4], root=root)
    skipped = [file for file, _ in res.skipped]
    assert len(skipped) == 2 and any(f.endswith(rows[1]["image"]) for f in skipped)
    assert any(f.endswith(rows[2]["audio"]) for f in skipped)
