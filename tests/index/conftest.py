"""Fixtures for index and serve tests: a tiny world, a tiny model with an audio tower."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

TINY_WORLD = dict(colours=("red", "green", "blue"), shapes=("circle", "square", "triangle"), image_size=32,
                  images_train=3, images_val=1, images_test=2, video_frames=8, video_size=32, clips_train=1,
                  clips_val=1, clips_test=1, audio_sample_rate=8000)


@pytest.fixture(scope="session")
def tiny_world_src(tmp_path_factory) -> Path:
    from xmodal.experiments.world import WorldConfig, generate_world

    return Path(generate_world(tmp_path_factory.mktemp("world") / "w", WorldConfig(**TINY_WORLD), progress=False))


@pytest.fixture
def media(tiny_world_src, tmp_path) -> Path:
    """A private copy of the tiny world's media (a few images, clips and sounds) that a test may edit."""
    out = tmp_path / "media"
    out.mkdir()
    for sub, n in (("images", 8), ("videos", 3), ("audio", 3)):
        (out / sub).mkdir()
        for f in sorted((tiny_world_src / sub).iterdir())[:n]:
            shutil.copy2(f, out / sub / f.name)
    return out


class TinyAudio(nn.Module):
    """A test-only audio tower: mean log-mel over time -> linear -> unit vector."""

    modality = "audio"

    def __init__(self, n_mels: int, dim: int) -> None:
        super().__init__()
        self.embed_dim = dim
        self.proj = nn.Linear(n_mels, dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.normalize(self.proj(batch["input_features"].mean(-1)), dim=-1)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [batch["input_features"].transpose(1, 2)]


@pytest.fixture
def audio_model(tiny_lit):
    """``tiny_lit`` plus a tiny audio tower (modalities image, text, audio, video)."""
    from xmodal.backbones.base import XModel
    from xmodal.modalities import AudioSpec

    spec = AudioSpec(sample_rate=8000, n_mels=16, n_fft=256, hop_length=128, max_seconds=1.0)
    torch.manual_seed(0)
    towers = {**tiny_lit.towers, "audio": TinyAudio(spec.n_mels, tiny_lit.embed_dim)}
    return XModel(tiny_lit.backbone, tiny_lit.config, towers, {**tiny_lit.specs, "audio": spec})


@pytest.fixture
def tiny_model_dir(tiny_lit, tmp_path) -> Path:
    """``tiny_lit`` saved as a checkpoint folder (for the CLI and subprocess tests)."""
    return tiny_lit.save_pretrained(tmp_path / "model")
