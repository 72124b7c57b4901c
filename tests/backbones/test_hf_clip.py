"""hf_clip: transformers CLIP-family models load through the hub-name/path code path and give exactly
the embeddings transformers computes."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from xmodal.backbones import BACKBONES, XModel
from xmodal.backbones.hf_clip import (
    CLIP_MEAN,
    HFClipConfig,
    HFImageTower,
    HFTextTower,
    image_spec,
    load_hf,
)
from xmodal.errors import CheckpointError, ConfigError
from xmodal.modalities.base import VideoSpec


def build(folder: Path | str, **cfg: Any) -> XModel:
    return BACKBONES.get("hf_clip").build(HFClipConfig(name_or_path=str(folder), **cfg))


def features(out: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or a ModelOutput (transformers 5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@pytest.fixture(scope="module")
def reference() -> dict[str, nn.Module]:
    """Per folder, the model as transformers itself loads it (cached across tests)."""
    return {}


def hf_model(reference: dict[str, nn.Module], folder: Path) -> nn.Module:
    from transformers import AutoModel

    key = str(folder)
    if key not in reference:
        reference[key] = AutoModel.from_pretrained(folder).eval()
    return reference[key]


@torch.no_grad()
def test_embeddings_match_transformers(hf_kind, reference, pixels, tokenize, tiny) -> None:
    kind, folder = hf_kind
    model = build(folder)
    hf = hf_model(reference, folder)
    image = model.encode("image", {"pixel_values": pixels})
    expected = nn.functional.normalize(features(hf.get_image_features(pixel_values=pixels)), dim=-1)
    torch.testing.assert_close(image, expected, atol=1e-5, rtol=0)

    batch = tokenize(model, tiny.captions)
    text = model.encode("text", batch)
    accepted = inspect.signature(hf.get_text_features).parameters
    hf_inputs = {k: v for k, v in batch.items() if k in accepted}
    expected = nn.functional.normalize(features(hf.get_text_features(**hf_inputs)), dim=-1)
    torch.testing.assert_close(text, expected, atol=1e-5, rtol=0)

    dim = tiny.width if kind == "siglip" else tiny.projection
    assert image.shape == (3, dim) and text.shape == (len(tiny.captions), dim)
    assert model.embed_dim == dim
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(len(tiny.captions)))


def test_config_and_specs(hf_kind, tiny) -> None:
    kind, folder = hf_kind
    model = build(folder)
    assert model.backbone == "hf_clip"
    assert model.config == HFClipConfig(name_or_path=str(folder), model_type=kind)
    assert set(model.specs) == {"image", "video", "text"}
    assert model.modalities == ["image", "text", "video"]
    ispec = model.spec("image")
    assert ispec.size == tiny.image_size and ispec.resample == "bicubic"
    assert ispec.mean == ((0.5,) * 3 if kind == "siglip" else pytest.approx(CLIP_MEAN))
    assert isinstance(model.spec("video"), VideoSpec) and model.spec("video").image == ispec
    tspec = model.spec("text")
    assert tspec.max_length == tiny.max_tokens
    assert tspec.padding == ("max_length" if kind == "siglip" else "longest")
    assert build(folder, max_length=8).spec("text").max_length == 8


def test_towers_share_the_transformers_modules(hf_kind, reference) -> None:
    kind, folder = hf_kind
    model = build(folder)
    image, text = model.tower("image"), model.tower("text")
    assert isinstance(image, HFImageTower) and isinstance(text, HFTextTower)
    assert (image.modality, text.modality) == ("image", "text")
    assert type(image.encoder).__name__.endswith("VisionModel") and type(text.encoder).__name__.endswith("TextModel")
    image_ids = {id(p) for p in image.parameters()}
    assert image_ids.isdisjoint(id(p) for p in text.parameters())
    # every weight of the transformers model is in exactly one tower (logit_scale/bias: in the XModel)
    hf = hf_model(reference, folder)
    hf_count = sum(p.numel() for n, p in hf.named_parameters() if not n.startswith("logit_"))
    tower_count = sum(p.numel() for p in image.parameters()) + sum(p.numel() for p in text.parameters())
    assert tower_count == hf_count
    assert sum(p.numel() for p in model.parameters()) == hf_count + 2


@torch.no_grad()
def test_trunk_and_head_compose_to_forward(hf_kind, pixels) -> None:
    _, folder = hf_kind
    model = build(folder)
    tower = model.tower("image")
    torch.testing.assert_close(tower.head(tower.trunk({"pixel_values": pixels})), tower({"pixel_values": pixels}))


@torch.no_grad()
def test_forward_features(hf_kind, pixels, tokenize, tiny) -> None:
    kind, folder = hf_kind
    model = build(folder)
    feats = model.tower("image").forward_features({"pixel_values": pixels})
    patches = (tiny.image_size // 10) ** 2 + (0 if kind == "siglip" else 1)  # SigLIP has no class token
    assert len(feats) == tiny.layers + 1
    assert all(f.shape == (3, patches, tiny.width) for f in feats)
    batch = tokenize(model, tiny.captions)
    feats = model.tower("text").forward_features(batch)
    assert len(feats) == tiny.layers + 1
    assert all(f.shape == (len(tiny.captions), batch["input_ids"].shape[1], tiny.width) for f in feats)


@torch.no_grad()
def test_video_is_the_normalised_mean_of_frames(hf_kind, tiny) -> None:
    _, folder = hf_kind
    model = build(folder)
    video = torch.randn(2, 4, 3, tiny.image_size, tiny.image_size, generator=torch.Generator().manual_seed(2))
    got = model.encode("video", {"pixel_values": video})
    frames = torch.stack([model.encode("image", {"pixel_values": clip}) for clip in video])  # [B, T, D]
    expected = nn.functional.normalize(frames.mean(1), dim=-1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert got.shape == (2, model.embed_dim)


def test_logit_scale_and_bias_are_copied(hf_kind, tiny) -> None:
    kind, folder = hf_kind
    model = build(folder)
    scale, bias = tiny.logits[kind]
    assert model.logit_scale.item() == pytest.approx(scale)
    assert model.logit_bias.item() == pytest.approx(0.0 if bias is None else bias)
    assert model.logit_scale.shape == () and model.logit_scale.requires_grad


def test_load_hf_and_xmodal_load(hf_folders, pixels) -> None:
    from xmodal.api import load

    folder = hf_folders["clip"]
    a, b = load_hf(folder), load(str(folder))
    with torch.no_grad():
        torch.testing.assert_close(a.encode("image", {"pixel_values": pixels}), b.encode("image", {"pixel_values": pixels}))


def test_image_spec_defaults_without_a_processor(hf_folders, tiny) -> None:
    from transformers import AutoConfig

    clip = image_spec(None, AutoConfig.from_pretrained(hf_folders["clip"]))
    assert (clip.size, clip.mean, clip.resample) == (tiny.image_size, CLIP_MEAN, "bicubic")
    siglip = image_spec(None, AutoConfig.from_pretrained(hf_folders["siglip"]))
    assert (siglip.size, siglip.mean, siglip.std) == (tiny.image_size, (0.5,) * 3, (0.5,) * 3)


def test_unsupported_model_type_is_a_config_error(tiny_text_dir) -> None:
    with pytest.raises(ConfigError, match=r"'bert' is not a supported dual encoder") as info:
        build(tiny_text_dir)
    assert str(tiny_text_dir) in str(info.value)


def test_model_type_mismatch_is_a_config_error(hf_folders) -> None:
    with pytest.raises(ConfigError, match="model type is 'clip'"):
        build(hf_folders["clip"], model_type="siglip")


@pytest.mark.parametrize("make", [lambda tmp: str(tmp / "no-such-model"), lambda tmp: "./no-such-model-here"])
def test_missing_folder_is_a_clear_error(tmp_path, make) -> None:
    name = make(tmp_path)
    with pytest.raises(CheckpointError, match="no such folder") as info:
        build(name)
    assert name in str(info.value)


def test_folder_without_config_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no config.json"):
        build(tmp_path)


def test_unknown_hub_name_offline_is_a_clear_error() -> None:
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 (no network attempt in tests)")
    with pytest.raises(CheckpointError, match="xmodal-tests/no-such-model.*Hugging Face hub"):
        build("xmodal-tests/no-such-model")


def test_empty_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="name_or_path"):
        build("")
