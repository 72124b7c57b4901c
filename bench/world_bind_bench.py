"""Bind audio to the frozen (frame-averaged) image tower on the built-in world and measure
audio -> video retrieval of each clip's own video, and audio zero-shot of the motion class.

    python bench/world_bind_bench.py [--out world-bind] [--epochs 6]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import xmodal
from xmodal.alignment.train import AlignConfig, align
from xmodal.binding.train import BindConfig, bind
from xmodal.data.manifest import read_manifest
from xmodal.experiments.world import WorldConfig, generate_world, world_paths
from xmodal.engine.fit import FitConfig
from xmodal.eval.metrics import retrieval_metrics
from xmodal.eval.report import text_table
from xmodal.tasks.embed import embed

AUDIO_SPEC = {"sample_rate": 16000, "n_mels": 40, "n_fft": 512, "hop_length": 320, "max_seconds": 2.0}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="world-bind")
    p.add_argument("--epochs", type=int, default=6)
    args = p.parse_args()
    start = time.time()
    torch.manual_seed(0)
    out = Path(args.out)
    root = generate_world(out / "world", WorldConfig(images_train=20, image_size=32, video_size=32))
    paths = world_paths(root)
    images, videos = read_manifest(paths["images"]), read_manifest(paths["videos"])
    fit = FitConfig(epochs=args.epochs, lr=2e-3, progress=False, verbose=False)
    model = xmodal.load("lit", vision={"width": 32, "depth": 3, "image_size": 32})
    align(model, [r for r in images if r["split"] == "train"], AlignConfig(batch_size=128, fit=fit), root=root)
    train = [r for r in videos if r["split"] == "train"]
    test = [r for r in videos if r["split"] == "test"]
    cfg = BindConfig(encoder="audio_cnn", encoder_config={"width": 16, "depth": 3}, spec=AUDIO_SPEC, anchor="video",
                     columns=("audio", "path"),
                     align=AlignConfig(label_column="", batch_size=64, fit=FitConfig(epochs=3 * args.epochs, lr=3e-3, progress=False, verbose=False)))
    res = bind(model, train, cfg, root=root, out=out / "bound")
    bound = xmodal.load(out / "bound" / "model")
    a = embed(bound, "audio", [r["audio"] for r in test], root=root, progress=False).vectors
    v = embed(bound, "video", [r["path"] for r in test], root=root, progress=False).vectors
    m = retrieval_metrics(a @ v.t())
    back = retrieval_metrics(v @ a.t())
    n = len(test)
    rows = [{"measure": "audio->video R@1 (own clip)", "value": round(100 * m["R@1"], 1), "chance": round(100 / n, 1)},
            {"measure": "audio->video R@10 (own clip)", "value": round(100 * m["R@10"], 1), "chance": round(1000 / n, 1)},
            {"measure": "video->audio R@10 (own clip)", "value": round(100 * back["R@10"], 1), "chance": round(1000 / n, 1)},
            {"measure": "audio->video median rank", "value": m["median_rank"], "chance": (n + 1) / 2}]
    print(text_table(rows))
    print(f"({n} test clips, {len(train)} train clips, cached {res.cached}, {time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
