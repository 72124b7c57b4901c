"""av-digits benchmark: unimodal, each fusion, missing modalities and emergent binding, one table.

Real handwriting (MNIST) + real speech (FSDD) from ``../shared/data/av-digits/pairs.csv``, read with
the ordinary manifest loader. About 10-15 minutes on a 2-core CPU::

    python bench/av_digits_bench.py [--data ../shared/data/av-digits] [--epochs 4] [--out bench-out]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import xmodal
from xmodal.alignment.train import AlignConfig, align
from xmodal.binding.train import BindConfig, bind
from xmodal.data.manifest import read_manifest
from xmodal.engine.fit import FitConfig
from xmodal.eval.metrics import retrieval_metrics
from xmodal.eval.report import text_table
from xmodal.fusion.evaluate import evaluate_fusion, plot_robustness
from xmodal.fusion.train import FuseConfig, fuse
from xmodal.tasks.embed import embed

AUDIO_SPEC = {"sample_rate": 8000, "n_mels": 40, "n_fft": 256, "hop_length": 80, "max_seconds": 1.0}
ENCODERS = {"audio": {"encoder": "audio_cnn", "config": {"width": 16, "depth": 3}, "spec": AUDIO_SPEC},
            "image": {"config": {"width": 16, "depth": 3, "image_size": 28, "stem_stride": 2}, "spec": {"size": 28}}}
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = ("{}", "the number {}", "the digit {}", "a handwritten {}")


def classifier(name, train, test, root, mods, fusion, dropout, epochs, out):
    cfg = FuseConfig(fusion=fusion, modalities=mods, columns=mods, encoders=ENCODERS, modality_dropout=dropout,
                     fit=FitConfig(epochs=epochs, lr=3e-3, progress=False, verbose=False))
    t = time.time()
    res = fuse(train, cfg, root=root)
    ev = evaluate_fusion(res.model, test, mods, root=root, noise_levels=(0.0, 0.25, 0.5, 1.0))
    plot_robustness(ev, out / f"robustness_{name}.png", title=name)
    print(f"{name}: {json.dumps(ev.subsets)} ({time.time() - t:.0f} s)", flush=True)
    return ev


def emergent(train, test, root, epochs, out):
    """LiT images <-> digit words, then bind audio to the image tower only (pairs, no labels, no text)."""
    torch.manual_seed(0)
    model = xmodal.load("lit", vision={"width": 16, "depth": 3, "image_size": 28, "stem_stride": 2})
    fit = FitConfig(epochs=epochs, lr=2e-3, progress=False, verbose=False)
    align(model, train, AlignConfig(columns=("image", "text"), batch_size=128, templates=TEMPLATES, fit=fit), root=root)
    img_zs = xmodal.zeroshot(model, [r["image"] for r in test], [r["text"] for r in test], WORDS, TEMPLATES,
                             modality="image", root=root, progress=False)
    bcfg = BindConfig(encoder="audio_cnn", encoder_config={"width": 16, "depth": 3}, spec=AUDIO_SPEC, anchor="image",
                      columns=("audio", "image"),
                      align=AlignConfig(label_column="", batch_size=128, fit=FitConfig(epochs=2 * epochs, lr=3e-3, progress=False, verbose=False)))
    bound = bind(model, train, bcfg, root=root, out=out / "bound").model.eval()
    bound = xmodal.load(out / "bound" / "model")  # the reloaded checkpoint is what we measure
    zs = xmodal.zeroshot(bound, [r["audio"] for r in test], [r["text"] for r in test], WORDS, TEMPLATES,
                         modality="audio", root=root, progress=False)
    a = embed(bound, "audio", [r["audio"] for r in test], root=root, progress=False).vectors
    v = embed(bound, "image", [r["image"] for r in test], root=root, progress=False).vectors
    labels = torch.tensor([int(r["label"]) for r in test])
    same = labels[:, None] == labels[None, :]
    pair = retrieval_metrics(a @ v.t())
    cls = retrieval_metrics(a @ v.t(), positives=same)
    back = retrieval_metrics(v @ a.t(), positives=same)
    return {"image zero-shot top1 (LiT)": img_zs.top1, "audio zero-shot top1 (emergent)": zs.top1,
            "audio->image R@1 (own pair)": pair["R@1"], "audio->image R@10 (own pair)": pair["R@10"],
            "audio->image R@1 (same digit)": cls["R@1"], "audio->image R@10 (same digit)": cls["R@10"],
            "image->audio R@1 (same digit)": back["R@1"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "av-digits"))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--out", default="bench-out")
    p.add_argument("--skip-bind", action="store_true")
    p.add_argument("--holdout-speaker", default="", help="test on all rows of this speaker, train on the other speakers' "
                   "train rows (speaker-independent); default: the official split")
    args = p.parse_args()
    torch.manual_seed(0)
    root, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_manifest(root / "pairs.csv")
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    bind_train, bind_test = train, test  # binding is always measured on the official split
    if args.holdout_speaker:  # each recording has its own image, so held-out rows share no file with training
        train = [r for r in train if r["speaker"] != args.holdout_speaker]
        test = [r for r in rows if r["speaker"] == args.holdout_speaker]
    start = time.time()
    table, results = [], {}
    both = ("image", "audio")
    for name, mods, fusion, drop in [("image only", ("image",), "late", 0.0), ("audio only", ("audio",), "late", 0.0),
                                     ("early + dropout", both, "early", 0.3), ("late + dropout", both, "late", 0.3),
                                     ("cross_attention + dropout", both, "cross_attention", 0.3)]:
        results[name] = classifier(name, train, test, root, mods, fusion, drop, args.epochs, out)
    best = max(["early", "late", "cross_attention"], key=lambda f: results[f"{f} + dropout"].subsets["image+audio"])
    results[f"{best}, no dropout"] = classifier(f"{best}, no dropout", train, test, root, both, best, 0.0, args.epochs, out)
    for name, ev in results.items():
        row = {"experiment": name, "image+audio": ev.subsets.get("image+audio"), "image": ev.subsets.get("image"),
               "audio": ev.subsets.get("audio")}
        row["top1 @ noise 0.5"] = ev.noise[next(iter(ev.noise))][2]
        table.append(row)
    uni_img, uni_aud = results["image only"].subsets["image"], results["audio only"].subsets["audio"]
    fused = results[f"{best} + dropout"]
    summary = {"best fusion": best, "best fusion - best single (points)": 100 * (fused.subsets["image+audio"] - max(uni_img, uni_aud)),
               "dropout: image removed vs audio-only model (points)": 100 * (fused.subsets["audio"] - uni_aud),
               "dropout: audio removed vs image-only model (points)": 100 * (fused.subsets["image"] - uni_img),
               "no dropout: image removed vs audio-only model (points)": 100 * (results[f"{best}, no dropout"].subsets["audio"] - uni_aud),
               "no dropout: audio removed vs image-only model (points)": 100 * (results[f"{best}, no dropout"].subsets["image"] - uni_img)}
    if not args.skip_bind:
        summary.update(emergent(bind_train, bind_test, root, args.epochs, out))
    print()
    print(text_table([{k: (round(100 * v, 1) if isinstance(v, float) else v) for k, v in r.items()} for r in table]))
    print()
    print(text_table([{"measure": k, "value": round(v if "points" in k else 100 * v, 1) if isinstance(v, float) else v}
                      for k, v in summary.items()]))
    print(f"\n(accuracies and recalls in %, {len(test)} test rows, {time.time() - start:.0f} s; robustness PNGs in {out})")
    (out / "results.json").write_text(json.dumps({"table": table, "summary": summary}, indent=2, default=str))


if __name__ == "__main__":
    main()
