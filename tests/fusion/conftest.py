"""A tiny paired audio-image manifest (2 classes: red squares + low tones, blue squares + high tones)
for fusion tests (same builder as tests/bind/conftest.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodal.modalities.audio import write_wav

RATE = 8000
AUDIO_SPEC = {"sample_rate": RATE, "n_mels": 16, "n_fft": 128, "hop_length": 64, "max_seconds": 0.25}


def make_av(root: Path, per_class: int = 6) -> Path:
    """``pairs.csv`` with columns image,audio,text,label,split in ``root``."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for label, rgb, freq in (("red", (220, 40, 40), 400.0), ("blue", (40, 60, 220), 1600.0)):
        for k in range(per_class):
            img = np.clip(np.array(rgb) + rng.normal(0, 15, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"img/{label}{k}.png")
            t = np.arange(int(0.25 * RATE)) / RATE
            wave = 0.5 * np.sin(2 * np.pi * freq * (1 + 0.05 * rng.normal()) * t) + 0.02 * rng.normal(size=t.size)
            write_wav(root / f"wav/{label}{k}.wav", wave, RATE)
            rows.append({"image": f"img/{label}{k}.png", "audio": f"wav/{label}{k}.wav", "text": f"a {label} thing",
                         "label": label, "split": "test" if k >= per_class - 2 else "train"})
    with (root / "pairs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "pairs.csv"


@pytest.fixture(scope="session")
def tiny_av(tmp_path_factory) -> Path:
    return make_av(tmp_path_factory.mktemp("av"))
