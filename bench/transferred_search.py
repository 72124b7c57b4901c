"""Text -> video search on the built-in world: a transferred video model (task ``retrieve``) vs the frame-averaged base.

One script, one run, both measured on the same index contents and the same queries:

1. worlds: the built-in world (``WorldConfig()``, 224 clips) is what gets indexed and queried; a training world
   (another seed, so no test clip is trained on: 40 images per seen colour-shape combination to align the base,
   ``--train-clips`` clips per motion to transfer with) and, with ``--dense-clips``, a dense test world (3 colours
   x 3 shapes x 8 motions, ``--dense-clips`` clips per motion: ~dense/9 clips per (colour, shape, motion), so
   that P@10 on the triple can reach 1; the built-in world has < 1 clip per triple, which caps it near 0.1);
2. the base: a LiT ViT (locked MiniLM text tower) aligned on the training world's images (``compare``'s base
   recipe), or ``--base FOLDER``;
3. the transfer: ``xmodal.transfer`` with ``--task retrieve`` (rows that share colour, shape and motion are
   positives), strategy ``--strategy``, on the training world's clips, saved in ``OUT/run-STRATEGY-OPTIONS/model``;
4. for the base (video = frame average) and for that ``model`` folder (``xmodal.load`` of the transfer folder):
   ``xmodal.Index.build`` of the world's videos, then every test caption as a text query (video filter):
   P@k on the motion (the ``label`` column), on colour+shape and on the triple; R-precision on the triple
   (precision at R = the number of clips of the query's triple in the index) and the best P@k the index allows
   (mean of min(k, R) / k).

    python bench/transferred_search.py --out /tmp/tsearch --strategy lora --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

TRIPLE = ("colour", "shape", "motion")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="work folder (worlds, base, run, indexes, results.json)")
    p.add_argument("--base", help="aligned base model folder (default: align a LiT ViT on the training world)")
    p.add_argument("--strategy", default="lora", help="transfer strategy (default lora)")
    p.add_argument("--option", action="append", default=[], help="strategy option key=value (repeatable)")
    p.add_argument("--epochs", type=int, default=40, help="transfer epochs (default 40; --minutes caps them)")
    p.add_argument("--minutes", type=float, default=8.0, help="transfer time budget, minutes (default 8)")
    p.add_argument("--lr", type=float, default=0.0, help="peak learning rate (default: the strategy's)")
    p.add_argument("--align-epochs", type=int, default=15, help="base alignment epochs (default 15)")
    p.add_argument("--train-clips", type=int, default=64, help="training clips per motion (default 64: the training "
                   "world's; another number: a video-only training world, seed 3)")
    p.add_argument("--dense-clips", type=int, default=0, help="dense test world clips per motion (0 = none)")
    p.add_argument("-k", type=int, default=10, help="top-k (default 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience, epochs (default 10)")
    p.add_argument("--precision", default="fp32", help="transfer training precision: fp32|auto|bf16 (default fp32)")
    return p.parse_args()


def run_name(args: argparse.Namespace) -> str:
    """The run folder of these transfer settings (shell-safe): ``run-lora-rank-16-epochs-80``."""
    import re

    parts = [args.strategy, *args.option, f"epochs={args.epochs}", f"clips={args.train_clips}"]
    return "run-" + re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)).strip("-")


def worlds(out: Path, args: argparse.Namespace) -> dict[str, Path]:
    from xmodal.experiments.world import WorldConfig, generate_world

    cfgs = {"world": WorldConfig(),
            "train_world": WorldConfig(seed=1, images_train=40, images_val=2, images_test=0, clips_train=64, clips_val=8,
                                       clips_test=0)}
    if args.train_clips != 64:  # transfer on a video-only training world of that many clips per motion
        cfgs["train_videos"] = WorldConfig(seed=3, images_train=0, images_val=0, images_test=0,
                                           clips_train=args.train_clips, clips_val=8, clips_test=0)
    if args.dense_clips:
        cfgs["dense_world"] = WorldConfig(seed=2, colours=("red", "green", "blue"), shapes=("circle", "square", "triangle"),
                                          hold_out=False, images_train=0, images_val=0, images_test=0, clips_train=0,
                                          clips_val=0, clips_test=args.dense_clips)
    return {name: generate_world(out / name, cfg, progress=False) for name, cfg in cfgs.items()}


def align_base(out: Path, train_world: Path, epochs: int) -> str:
    """A LiT ViT aligned on the training world's images (``xmodal compare``'s base recipe)."""
    import xmodal
    from xmodal.config import to_dict
    from xmodal.experiments.compare import CompareConfig

    folder = out / "base"
    if (folder / "model" / "xmodal.json").is_file():
        return str((folder / "model").resolve())
    cfg = CompareConfig()
    cfg.align.fit.epochs = epochs
    images = xmodal.read_manifest(train_world / "images.csv")
    t0 = time.perf_counter()
    xmodal.align(xmodal.load("lit", **to_dict(cfg.base)), [r for r in images if r["split"] == "train"], cfg.align,
                 val_rows=[r for r in images if r["split"] == "val"], root=train_world, out=folder)
    print(f"base aligned in {time.perf_counter() - t0:.0f} s", flush=True)
    return str((folder / "model").resolve())


def transfer_run(out: Path, base: str, train_world: Path, world: Path, args: argparse.Namespace) -> tuple[str, dict]:
    import xmodal
    from xmodal.config import apply_overrides
    from xmodal.engine.fit import FitConfig

    rows = xmodal.read_manifest(train_world / "videos.csv")
    test = [dict(r, path=str(world / r["path"])) for r in xmodal.read_manifest(world / "videos.csv") if r["split"] == "test"]
    cfg = xmodal.TransferConfig(task="retrieve", strategy=args.strategy, options=apply_overrides({}, args.option),
                                task_options={"match_columns": list(TRIPLE)}, batch_size=64, lr=args.lr,
                                fit=FitConfig(epochs=args.epochs, lr=3e-3, patience=args.patience, restore_best=True, weight_decay=0.01,
                                              max_minutes=args.minutes, progress=False, verbose=False,
                                              precision=args.precision))
    t0 = time.perf_counter()
    res = xmodal.transfer(xmodal.load(base), [r for r in rows if r["split"] == "train"], cfg,
                          [r for r in rows if r["split"] == "val"], test, root=train_world, out=out / run_name(args), base=base)
    keep = ("t2v_R@1", "t2v_R@5", "t2v_R@10", "v2t_R@1", "trainable_params", "epochs", "train_seconds")
    summary = {k: res.metrics.get(k) for k in keep}
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print("transfer", json.dumps(summary), flush=True)
    return str((out / run_name(args) / "model").resolve()), summary


def search_figures(model: str, world: Path, index_dir: Path, k: int) -> dict:
    """Index the world's videos with ``model``; every test caption as a query (video filter)."""
    import xmodal

    rows = xmodal.read_manifest(world / "videos.csv")
    truth = {str((world / r["path"]).resolve()): r for r in rows}
    index = xmodal.Index.build([world / "videos"], model=model, out=index_dir)
    queries = [r for r in rows if r["split"].startswith("test")]
    count = {}
    for r in rows:
        count[tuple(r[c] for c in TRIPLE)] = count.get(tuple(r[c] for c in TRIPLE), 0) + 1
    figures: dict[str, list[float]] = {"motion": [], "colour_shape": [], "triple": [], "R_precision_triple": [],
                                       "best_possible_triple": []}
    for q in queries:
        n_rel = count[tuple(q[c] for c in TRIPLE)]
        hits = [truth[h.path] for h in index.search(q["caption"], k=max(k, n_rel), modality="video")]
        same = [[h[c] == q[c] for c in TRIPLE] for h in hits]
        figures["motion"].append(np.mean([s[2] for s in same[:k]]))
        figures["colour_shape"].append(np.mean([s[0] and s[1] for s in same[:k]]))
        figures["triple"].append(np.mean([all(s) for s in same[:k]]))
        figures["R_precision_triple"].append(np.mean([all(s) for s in same[:n_rel]]))
        figures["best_possible_triple"].append(min(k, n_rel) / k)
    out = {"clips": len(index), "queries": len(queries),
           "index_seconds": round(index.last_report.seconds, 1)}
    out.update({(f"P@{k}_{name}" if name in ("motion", "colour_shape", "triple") else name if name.startswith("R_")
                 else f"max_P@{k}_triple"): round(float(np.mean(v)), 4) for name, v in figures.items()})
    index.close()
    return out


def main() -> None:
    args = parse()
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    w = worlds(out, args)
    print(f"worlds ready in {time.perf_counter() - t0:.0f} s", flush=True)
    base = args.base or align_base(out, w["train_world"], args.align_epochs)
    transferred, summary = transfer_run(out, base, w.get("train_videos", w["train_world"]), w["world"], args)
    results = {"strategy": args.strategy, "options": args.option, "base": base, "transfer": summary}
    for name in [n for n in ("world", "dense_world") if n in w]:
        for label, model in (("frame_averaged_base", base), ("transferred", transferred)):
            tag = label if model == base else f"{label}-{run_name(args)}"
            figures = search_figures(model, w[name], out / f"index-{name}-{tag}", args.k)
            results[f"{name}/{label}"] = figures
            print(name, label, json.dumps(figures), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"total {time.perf_counter() - t0:.0f} s; wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
