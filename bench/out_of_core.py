"""Out-of-core frozen features: 1M clips trained from the on-disk feature store with flat RAM.

What is measured (two runs, each in a fresh process so that its peak RSS is its own):

- the data: 1,000,000 synthetic clips x 4 frames x 512-d frame features in float16 (4 KiB a clip,
  ~3.8 GiB on disk: larger than the 2 GB RSS limit; 8 frames in fp32 would be 16 GB, more than this
  box's disk budget and 10 minutes allow). Each clip's features are its class centroid (10 classes)
  plus noise, so the probe has something to learn.
- "encoding": a fake frozen encoder (cheap: the synthetic generator) stands in for the backbone; its
  output goes through the same path a transfer's encoding takes: ``engine/store.fill`` -> the store's
  sharded writer, keyed like a transfer (store folder = ``strategies/features.namespace`` of the
  model's weights, the strategy and the preprocessing; row key = digest of the clip's content id and the preprocessing).
- training: a ``linear_probe`` head (classify, 10 classes) over a LiT model whose frame trunk is 512
  wide, one epoch over all 1M clips through the real engine (``engine.fit.fit`` with
  ``strategies/train.training_step``), every batch gathered from the shards' memory maps.
- run 2 repeats the same: ``fill`` finds every key, the encoder is called 0 times.

Columns: ``model s`` builds the model (loads the text tower), ``cache s`` makes the features ready
(namespace digest of the weights, 1M keys, the store's index, encoding + writing the missing rows),
``train s`` is the engine's epoch (every batch read from the memory maps), ``loss`` its mean loss.

Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of each run's process (it counts memory-mapped
file pages the process still maps, which is why the store releases them after every batch).

    python bench/out_of_core.py [--clips 1000000] [--frames 4] [--dim 512] [--batch 1024] [--store DIR]
        [--threads 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import xmodal

CLASSES = 10


def _model(frames: int, dim: int):
    import torch

    import xmodal
    from xmodal.strategies.train import TransferConfig, build

    torch.manual_seed(0)
    vision = {"arch": "vit", "width": dim, "depth": 1, "image_size": 32, "patch_size": 16, "heads": 8}
    model = xmodal.load("lit", num_frames=frames, vision=vision)
    return build(model, TransferConfig(task="classify", strategy="linear_probe"), {"classes": [str(c) for c in range(CLASSES)]})


def _fake_encoder(frames: int, dim: int, calls: list[int]):
    """``encode(indices) -> {"features": [n, frames, dim] float16}``: class centroid + noise per clip."""
    import numpy as np

    centroids = np.random.default_rng(0).standard_normal((CLASSES, 1, dim)).astype(np.float32)

    def encode(idx: list[int]) -> dict[str, np.ndarray]:
        calls.append(len(idx))
        rng = np.random.default_rng(idx[0])
        noise = rng.standard_normal((len(idx), frames, dim), dtype=np.float32) * 2.0
        return {"features": (centroids[np.asarray(idx) % CLASSES] + noise).astype(np.float16)}

    return encode


def run(args) -> dict:
    """One run: open (or fill) the store, train one epoch from it; its figures."""
    import torch
    from torch.utils.data import DataLoader

    from xmodal.engine.fit import FitConfig, fit
    from xmodal.engine.store import FeatureStore, StoredRows, digest, fill
    from xmodal.strategies.data import ClipSet
    from xmodal.strategies.features import namespace
    from xmodal.strategies.train import training_step

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    vm = _model(args.frames, args.dim)
    t1 = time.perf_counter()
    spec = repr(vm.base.spec("video"))
    store = FeatureStore(Path(args.store) / namespace(vm, vm.base.spec("video")))
    keys = [digest(digest(f"synthetic clip {i}").hex(), spec) for i in range(args.clips)]
    calls: list[int] = []
    entries, encoded = fill(store, keys, _fake_encoder(args.frames, args.dim, calls), batch_size=16384)
    cache_s, model_s = time.perf_counter() - t1, t1 - t0  # features ready (keys, index, encoding) / model built
    labels = torch.arange(args.clips) % CLASSES
    clips = ClipSet(torch.empty(0), torch.arange(args.clips), {"labels": labels}, [], [])
    inputs = {"features": StoredRows(store, "features", entries)}
    loader = DataLoader(range(args.clips), batch_size=args.batch, shuffle=True, generator=torch.Generator().manual_seed(0))
    cfg = FitConfig(epochs=1, lr=3e-3, progress=False, verbose=False)
    hist = fit(training_step(vm, clips, inputs), vm, loader, cfg)
    return {"encoder calls": len(calls), "clips encoded": encoded, "model s": round(model_s, 1), "cache s": round(cache_s, 1),
            "train s": round(hist.train_seconds, 1), "loss": round(hist.epochs[-1]["loss"], 4),
            "peak RSS MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "store GiB": round(store.nbytes() / 2**30, 2), "shards": len(store.shards)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=1_000_000)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--store", help="store folder (default: a temporary folder, removed at the end)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the temporary store")
    p.add_argument("--run", action="store_true", help=argparse.SUPPRESS)  # one run, in this process
    args = p.parse_args()
    if args.run:
        print(json.dumps(run(args)))
        return
    store = args.store or tempfile.mkdtemp(prefix="xmodal-ooc-")
    argv = [sys.executable, __file__, "--run", "--store", store, *sys.argv[1:]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(xmodal.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    rows = []
    try:
        for name in ("1: encode + train", "2: reuse + train"):  # each run in its own process: its own peak RSS
            done = subprocess.run(argv, capture_output=True, text=True, env=env)
            if done.returncode:
                sys.exit(f"out_of_core: run {name!r} failed:\n{done.stderr[-2000:]}")
            rows.append({"run": name, **json.loads(done.stdout.strip().splitlines()[-1])})
    finally:
        if not args.store and not args.keep:
            shutil.rmtree(store, ignore_errors=True)
    _report(rows, args)


def _report(rows: list[dict], args) -> None:
    from xmodal.eval.report import text_table

    print(f"{args.clips:,} clips x {args.frames} frames x {args.dim}-d float16, batch {args.batch}, "
          f"{args.threads} threads\n")
    print(text_table(rows))
    first, second = rows
    total = [r["model s"] + r["cache s"] + r["train s"] for r in rows]
    print(f"\nrun 2 encoder calls: {second['encoder calls']} (run 1: {first['encoder calls']}); "
          f"time to features {first['cache s']:.1f} s -> {second['cache s']:.1f} s; "
          f"run total {total[0]:.1f} s -> {total[1]:.1f} s ({total[0] / max(total[1], 1e-9):.2f}x)")
    print(f"peak RSS {max(r['peak RSS MB'] for r in rows)} MB vs the store's {first['store GiB']} GiB on disk "
          f"(features held in RAM would need at least the store's size)")


if __name__ == "__main__":
    main()
