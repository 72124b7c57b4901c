"""Text-to-media retrieval on the built-in world, through ``xmodal.Index`` (what ``xmodal search`` runs).

Indexes the world's media folder (images/, videos/, audio/), then queries with the world's own test
captions and reports, per target modality (audio too when the model has a bound audio tower): precision@k of the colour+shape (and, for videos, the full
label including the motion), the share of the unfiltered top-k that has the caption's modality, and
the index build figures.

    xmodal demo --out xmodal-demo            # trains the LiT model: xmodal-demo/run/model
    python bench/world_search.py --world xmodal-demo/world --model xmodal-demo/run/model --out /tmp/world.index
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", required=True, help="world folder (xmodal world / xmodal demo)")
    p.add_argument("--model", required=True, help="model name or checkpoint folder")
    p.add_argument("--out", required=True, help="index folder")
    p.add_argument("-k", type=int, default=10, help="top-k")
    p.add_argument("--queries", type=int, default=300, help="captions sampled per modality")
    p.add_argument("--workers", type=int, default=0, help="data-loading workers")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    import torch

    import xmodal
    from xmodal.index import BuildConfig

    torch.set_num_threads(2)
    world = Path(args.world).resolve()
    index = xmodal.Index.build([world], model=args.model, out=args.out, config=BuildConfig(workers=args.workers))
    r = index.last_report
    build = {"files": len(index), "embedded": r.embedded, "unchanged": r.unchanged, "skipped": len(r.skipped),
             "skip_reasons": sorted({p for _, p in r.skipped}), "seconds": round(r.seconds, 1),
             "files_per_second": round(r.embedded / r.seconds, 1) if r.seconds else None,
             "per_modality": index.stats()["modalities"]}
    print(json.dumps(build, indent=2))
    results = {"build": build}
    targets = [("image", "images.csv"), ("video", "videos.csv")]
    if "audio" in xmodal.load(args.model).modalities:  # a model with a bound audio tower
        targets.append(("audio", "videos.csv"))
    for modality, manifest in targets:
        rows = [row for row in xmodal.read_manifest(world / manifest) if row["split"].startswith("test")]
        results[modality] = evaluate(index, world, rows, modality, args.k, args.queries)
        print(modality, json.dumps(results[modality]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def evaluate(index, world: Path, rows: list[dict], modality: str, k: int, n: int) -> dict:
    """Precision@k of colour+shape (and full label) with the modality filter; modality share without.
    An audio file is judged by the clip it belongs to (the ``audio`` column of videos.csv)."""
    manifest = "images.csv" if modality == "image" else "videos.csv"
    column = "audio" if modality == "audio" else "path"
    import xmodal

    truth = {str((world / row[column]).resolve()): row for row in xmodal.read_manifest(world / manifest)}
    queries = random.Random(0).sample(rows, min(n, len(rows)))
    p_obj, p_label, share, top1 = [], [], [], []
    for q in queries:
        hits = index.search(q["caption"], k=k, modality=modality)
        rel = [truth.get(h.path) for h in hits]
        p_obj.append(np.mean([t is not None and (t["colour"], t["shape"]) == (q["colour"], q["shape"]) for t in rel]))
        p_label.append(np.mean([t is not None and t["label"] == q["label"] for t in rel]))
        top1.append(float(rel[0] is not None and rel[0]["label"] == q["label"]))
        share.append(np.mean([h.modality == modality for h in index.search(q["caption"], k=k)]))
    return {"queries": len(queries), f"P@{k}_colour_shape": round(float(np.mean(p_obj)), 4),
            f"P@{k}_label": round(float(np.mean(p_label)), 4), "top1_label": round(float(np.mean(top1)), 4),
            f"unfiltered_top{k}_share_of_{modality}": round(float(np.mean(share)), 4)}


if __name__ == "__main__":
    main()
