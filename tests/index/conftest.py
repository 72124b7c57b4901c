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


def clustered_vectors(rng, n: int, d: int = 64, clusters: int = 40, spread: float = 0.8, seed: int = 7):
    """``n`` unit vectors from a mixture of clusters with a decaying spectrum (variance of direction i
    ~ 1/i), like real embeddings; the clusters depend on ``seed`` only, so calls share them."""
    import numpy as np

    world = np.random.default_rng(seed)
    scale = np.arange(1, d + 1) ** -0.5
    centres = world.normal(size=(clusters, d)) * scale
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, d)) * scale / np.linalg.norm(scale)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


IVFPQ_ROWS, IVFPQ_DIM = 3000, 64


@pytest.fixture
def clustered():
    """:func:`clustered_vectors` (a function of ``rng, n``)."""
    return clustered_vectors


@pytest.fixture
def put_vectors():
    """:func:`put_rows` (a function of ``index, vecs, modality``)."""
    return put_rows


def put_rows(index, vecs, modality: str = "image") -> None:
    """Rows with made-up paths and these vectors into ``index``'s store, then its FAISS index rebuilt."""
    from xmodal.index.store import Row

    index.store.set_meta(embed_dim=vecs.shape[1])
    rows = [Row(f"/made-up/{modality}/{i}.png", "/made-up", modality, None, 1, 1, "0" * 32)
            for i in range(len(vecs))]
    with index.store.transaction():
        index.store.put(rows, vecs)
    index._rebuild(modality)


@pytest.fixture(scope="session")
def ivfpq_folder_src(tmp_path_factory) -> Path:
    """An index folder of 3000 made-up 64-d image rows whose FAISS index is ivfpq (built once)."""
    import numpy as np

    from xmodal.index import AnnConfig, Index

    folder = tmp_path_factory.mktemp("ivfpq") / "ix"
    index = Index.create(folder, ann_cfg=AnnConfig(exact_max=1000, kind="ivfpq", rerank=50))
    put_rows(index, clustered_vectors(np.random.default_rng(0), IVFPQ_ROWS, IVFPQ_DIM))
    index.save()
    index.close()
    return folder


@pytest.fixture
def ivfpq_folder(ivfpq_folder_src, tmp_path) -> Path:
    """A private copy of the ivfpq index folder that a test may damage."""
    return Path(shutil.copytree(ivfpq_folder_src, tmp_path / "ivfpq"))
