"""Every registered backbone honours the contract: built from its config dataclass, each tower maps its
modality's collated batch to L2-normalised ``[B, D]`` embeddings in one shared space, and
``save_pretrained`` -> ``xmodal.load`` reproduces them. A new backbone must add a tiny builder to
``TINY`` below, or ``test_every_backbone_has_a_tiny_builder`` fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn
from PIL import Image

import xmodal
import xmodal.strategies  # noqa: F401  (registers the ``transferred`` backbone)
from xmodal.backbones.base import BACKBONES, Backbone, XModel
from xmodal.modalities import MODALITIES
from xmodal.modalities.video import write_video


def _lit(folders: dict[str, Path]) -> XModel:
    return xmodal.load("lit", text_model=str(folders["text"]), vision={"width": 8, "depth": 2, "image_size": 16})


def _hf_clip(folders: dict[str, Path]) -> XModel:
    return xmodal.load(str(folders["siglip"]))


def _bound(folders: dict[str, Path]) -> XModel:
    """A LiT model with an audio tower bound to it (xmodal.bind)."""
    from xmodal.backbones.bound import add_tower
    from xmodal.encoders.base import Tower, build_encoder

    base = _lit(folders)
    net, spec, record = build_encoder("audio_cnn", {"width": 8, "depth": 2}, {"sample_rate": 8000, "n_mels": 16,
                                      "n_fft": 128, "hop_length": 64, "max_seconds": 0.25})
    return add_tower(base, "audio", Tower("audio", net, base.embed_dim), spec, record)


def _transferred(folders: dict[str, Path]) -> XModel:
    """The adapted towers of a LoRA retrieval transfer (``xmodal bind --model RUN/model`` binds to them)."""
    from xmodal.strategies.embedder import TransferredModel
    from xmodal.strategies.train import TransferConfig, build

    vision = {"arch": "vit", "width": 16, "depth": 2, "image_size": 16, "patch_size": 8, "heads": 2}
    base = xmodal.load("lit", text_model=str(folders["text"]), num_frames=2, vision=vision)
    vm = build(base, TransferConfig(task="retrieve", strategy="lora", options={"rank": 2}), {})
    with torch.no_grad():  # LoRA's B starts at zero: move it, so that the saved towers are not the base's
        for p in vm.parameters():
            if p.requires_grad:
                p.add_(0.05)
    return TransferredModel(vm.eval()).as_towers()


TINY: dict[str, Callable[[dict[str, Path]], XModel]] = {"lit": _lit, "hf_clip": _hf_clip, "bound": _bound,
                                                        "transferred": _transferred}


def _items(modality: str, tmp: Path) -> list[Any]:
    rng = np.random.default_rng(0)
    if modality == "text":
        return ["a photo of a cat", "a dog"]
    if modality == "image":
        paths = [tmp / f"{k}.png" for k in range(2)]
        for p in paths:
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(p)
        return paths
    if modality == "video":
        paths = [tmp / f"{k}.mp4" for k in range(2)]
        for p in paths:
            write_video(p, [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(6)], fps=6)
        return paths
    if modality == "audio":
        from xmodal.modalities.audio import write_wav

        paths = [tmp / f"{k}.wav" for k in range(2)]
        for p in paths:
            write_wav(p, rng.normal(0, 0.2, 2000), 8000)
        return paths
    raise AssertionError(f"no contract sample for modality {modality!r}: add one to _items")


def test_every_backbone_has_a_tiny_builder() -> None:
    assert set(BACKBONES.names()) == set(TINY)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_contract(name: str, tmp_path: Path, tiny_text_dir: Path, hf_folders: dict[str, Path]) -> None:
    backbone = BACKBONES.get(name)
    assert isinstance(backbone, Backbone)
    torch.manual_seed(0)
    model = TINY[name]({"text": tiny_text_dir, **hf_folders}).eval()
    assert isinstance(model, XModel) and model.backbone == name
    assert {"image", "text", "video"} <= set(model.modalities)
    embeddings = {}
    with torch.no_grad():
        for modality in model.modalities:
            spec, mod = model.spec(modality), MODALITIES.get(modality)
            batch = mod.collate([mod.load(i, spec) for i in _items(modality, tmp_path)], spec)
            out = model.encode(modality, batch)
            assert out.shape == (2, model.embed_dim), modality
            assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5), modality
            embeddings[modality] = (batch, out)
    path = model.save_pretrained(tmp_path / "saved")
    again = xmodal.load(path).eval()
    assert again.modalities == model.modalities
    with torch.no_grad():
        for modality, (batch, out) in embeddings.items():
            assert torch.allclose(again.encode(modality, batch), out, atol=1e-5), modality


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_tower_embeds_at_bf16_inference_close_to_fp32(name: str, tmp_path: Path, tiny_text_dir: Path,
                                                            hf_folders: dict[str, Path]) -> None:
    """``xmodal.embed(..., precision="bf16")`` holds the whole model in bf16 (engine/precision.py): every
    tower of every backbone runs that way (norms, convolutions, front ends) and stays near fp32."""
    from xmodal.tasks.embed import embed

    torch.manual_seed(0)
    model = TINY[name]({"text": tiny_text_dir, **hf_folders}).eval()
    for modality in model.modalities:
        items = _items(modality, tmp_path)
        fp32 = embed(model, modality, items, precision="fp32", progress=False).vectors
        bf16 = embed(model, modality, items, precision="bf16", progress=False).vectors
        assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape, modality
        assert (nn.functional.normalize(fp32, dim=-1) * bf16).sum(-1).min() >= 0.99, modality
    assert all(p.dtype == torch.float32 for p in model.parameters())
