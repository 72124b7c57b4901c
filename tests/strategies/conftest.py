"""Tiny fixtures for transfer tests: a LiT model with a 2-block width-16 ViT (16 px frames, 4 per clip),
a tiny transformers CLIP folder, and a manifest of tiny MP4 clips whose class is their motion."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

FRAMES = 4
SIZE = 16


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every strategy test on one torch thread (tests/conftest.py's ``one_thread``)."""


@pytest.fixture
def make_lit(tiny_text_dir) -> Callable[..., object]:
    """``make_lit(arch="vit")``: a fresh tiny LiT model (same weights for the same seed)."""
    import xmodal

    def make(arch: str = "vit", seed: int = 0):
        torch.manual_seed(seed)
        vision = {"arch": arch, "width": 16, "depth": 2, "image_size": SIZE, "patch_size": 8, "heads": 2}
        return xmodal.load("lit", text_model=str(tiny_text_dir), num_frames=FRAMES, vision=vision)

    return make


def _hf_builder():
    path = Path(__file__).parents[1] / "backbones" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_tiny_hf_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_hf_folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A tiny random transformers CLIP saved like a hub snapshot (built by tests/backbones/conftest.py)."""
    return _hf_builder()("clip", tmp_path_factory.mktemp("tiny-clip-transfer"))


@pytest.fixture
def clips() -> torch.Tensor:
    """Random preprocessed clips ``[3, FRAMES, 3, SIZE, SIZE]``."""
    return torch.randn(3, FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def _clip(direction: int, start: int, colour: tuple[int, int, int]) -> list[np.ndarray]:
    frames = []
    for t in range(6):
        img = np.zeros((SIZE, SIZE, 3), np.uint8)
        x = start + direction * 2 * t
        img[6:10, max(0, x): x + 4] = colour
        frames.append(img)
    return frames


@pytest.fixture(scope="session")
def video_manifest(tmp_path_factory) -> Path:
    """videos.csv (path,label,caption,split): squares moving left or right, 3/1/2 clips per class per split."""
    from xmodal.modalities.video import write_video

    root = tmp_path_factory.mktemp("motion")
    rows = []
    colours = [(220, 40, 40), (40, 170, 60), (40, 80, 220), (200, 200, 40), (200, 60, 200), (60, 200, 200)]
    for label, direction, start in (("moving right", 1, 0), ("moving left", -1, 12)):
        for k, colour in enumerate(colours):
            split = "train" if k < 3 else "val" if k == 3 else "test"
            path = f"videos/{label.replace(' ', '_')}_{k}.mp4"
            write_video(root / path, _clip(direction, start, colour))
            rows.append({"path": path, "label": label, "caption": f"a square {label} number {k}", "split": split})
    with (root / "videos.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "videos.csv"
