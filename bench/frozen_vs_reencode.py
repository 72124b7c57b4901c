"""Frozen features vs re-encoding: epoch time of the same temporal head trained two ways.

(a) cached: the frozen backbone encodes every clip once, the head trains on the cached features
    (what ``xmodal transfer`` does for frozen-backbone strategies);
(b) re-encode: the same head, the frozen backbone re-run on the (already decoded) frames every batch.

Both go through the one engine (``xmodal.engine.fit``) with identical data order and settings.

    python bench/frozen_vs_reencode.py [--model CKPT] [--data VIDEOS_CSV] [--epochs 3] [--threads 2]

Defaults: the compare's aligned base and world (``xmodal-compare/``; run ``xmodal compare`` first),
else a fresh LiT ViT on a small built-in world generated in ``bench-world/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import xmodal
from xmodal.data.manifest import read_manifest
from xmodal.engine.fit import FitConfig, fit
from xmodal.eval.report import text_table
from xmodal.strategies.data import load_split
from xmodal.strategies.train import TransferConfig, build, check, clip_inputs, split_rows, training_step


def _data(args) -> tuple[object, list[dict], Path]:
    if args.model and args.data:
        return xmodal.load(args.model), read_manifest(args.data), Path(args.data).parent
    if Path("xmodal-compare/base/model/xmodal.json").is_file():
        return xmodal.load("xmodal-compare/base/model"), read_manifest("xmodal-compare/world/videos.csv"), Path("xmodal-compare/world")
    from xmodal.experiments.world import WorldConfig, generate_world, world_paths

    root = generate_world("bench-world", WorldConfig(images_train=1, images_val=1, images_test=1, clips_train=4, clips_val=1, clips_test=1))
    model = xmodal.load("lit", num_frames=8, vision={"arch": "vit", "width": 96, "depth": 4, "patch_size": 8, "image_size": 32})
    return model, read_manifest(world_paths(root)["videos"]), root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model")
    p.add_argument("--data")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, rows, root = _data(args)
    train_rows = split_rows(rows)["train"]
    cfg = TransferConfig(strategy="temporal_head")
    task, task_cfg, _, _ = check(cfg)
    meta = task.meta(train_rows, task_cfg)
    clips = load_split(train_rows, task, task_cfg, meta, model.spec("video"), root, cfg.path_column, desc="train rows")
    vm = build(model, cfg, meta)
    fit_cfg = FitConfig(epochs=args.epochs, lr=3e-3, progress=False, verbose=False)
    results = []
    for mode in ("cached", "re-encode"):
        t0 = time.perf_counter()
        inputs = clip_inputs(vm, clips, 32) if mode == "cached" else {"pixel_values": clips.pixels}
        cache_s = time.perf_counter() - t0
        loader = DataLoader(range(len(clips)), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
        hist = fit(training_step(vm, clips, inputs), vm, loader, fit_cfg)
        per_epoch = hist.train_seconds / len(hist.epochs)
        results.append({"mode": mode, "clips": len(clips), "one-off cache s": round(cache_s, 3),
                        "s/epoch": round(per_epoch, 4), "epochs": len(hist.epochs)})
    ratio = results[1]["s/epoch"] / max(results[0]["s/epoch"], 1e-9)
    print(text_table(results))
    print(f"\nper-epoch speed-up of cached frozen features over re-encoding: {ratio:.0f}x")
    breakeven = results[0]["one-off cache s"] / max(results[1]["s/epoch"] - results[0]["s/epoch"], 1e-9)
    print(f"(the one-off cache costs about {breakeven:.1f} re-encoding epochs)")


if __name__ == "__main__":
    main()
