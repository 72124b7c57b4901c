"""``xmodal demo``: world -> LiT alignment -> zero-shot on seen and held-out combinations -> report.

A vision tower trained from scratch learns to speak the language of a frozen pretrained sentence
encoder (MiniLM) from image-caption pairs of the built-in world, then recognises colour-shape
combinations it never saw, named only in words.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from xmodal.alignment.train import AlignConfig, align
from xmodal.backbones.lit import LiTConfig
from xmodal.encoders.vision import VisionConfig
from xmodal.config import to_dict
from xmodal.data.manifest import read_manifest
from xmodal.experiments.world import WorldConfig, class_names, generate_world, held_out_combos, world_paths
from xmodal.engine.checkpoint import seed_everything
from xmodal.engine.fit import FitConfig
from xmodal.engine.runs import fingerprint, open_run
from xmodal.eval.plots import plot_confusion, plot_history, plot_per_class
from xmodal.eval.report import markdown_table, text_table, write_report
from xmodal.tasks.zeroshot import DEFAULT_TEMPLATES, build_zero_shot_classifier, zeroshot


@dataclass
class DemoConfig:
    out: str = "xmodal-demo"  # report folder (the world is cached in out/world)
    world: WorldConfig = field(default_factory=WorldConfig)  # the built-in data
    model: LiTConfig = field(default_factory=lambda: LiTConfig(vision=VisionConfig(width=32)))  # MiniLM + ConvNet
    align: AlignConfig = field(default_factory=lambda: AlignConfig(
        batch_size=128, fit=FitConfig(epochs=12, lr=2e-3, monitor="val_top1")))  # contrastive training
    threads: int = 0  # torch CPU threads; 0 = torch's default
    progress: bool = True  # progress bars
    compare: bool = False  # also run a compact image-to-video transfer compare (fast strategies, ~4 more minutes)


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole demo and return results (also written to ``cfg.out/report``)."""
    from xmodal.api import count_parameters, load

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not cfg.progress:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        cfg.align.fit.progress = False
    start = time.perf_counter()
    out = Path(cfg.out)
    say(f"[1/5] Building the built-in world in {out / 'world'} (cached after the first run)")
    root = generate_world(out / "world", cfg.world, progress=cfg.progress)
    paths = world_paths(root)
    images = read_manifest(paths["images"])
    split = lambda name: [r for r in images if r["split"] == name]  # noqa: E731
    say(f"      {len(images)} images, {len(class_names(cfg.world))} colour-shape classes, "
        f"{len(held_out_combos(cfg.world))} held out of training")

    say("[2/5] Building LiT: locked pretrained MiniLM text tower + vision tower trained from scratch")
    # the demo's run folder resumes the same run and starts over for other settings or data
    open_run(out / "run", "align", {"model": to_dict(cfg.model), "align": to_dict(cfg.align)},
             {"train": fingerprint(images, root)}, overwrite=True)
    seed_everything(cfg.align.seed)  # before the model is built: the same demo every time
    model = load("lit", **to_dict(cfg.model))
    params = count_parameters(model)
    say(f"      {params['trainable']:,} trainable of {params['total']:,} parameters")

    say(f"[3/5] Aligning images to captions ({cfg.align.loss} loss, {cfg.align.fit.epochs} epochs)")
    t0 = time.perf_counter()
    result = align(model, split("train"), cfg.align, val_rows=split("val"), root=root, out=out / "run")
    align_seconds = time.perf_counter() - t0
    zs = _zero_shot(model, root, cfg, split, say)
    say("[5/5] Writing the report")
    results = _results(cfg, params, result, zs, align_seconds, time.perf_counter() - start, root)
    files = _report(out / "report", cfg, results, result, zs)
    say("")
    say(text_table(results["summary"]))
    say(f"\nReport: {files['report']}  (results.json, PNG plots beside it); model: {out / 'run' / 'model'}")
    if cfg.compare:
        from xmodal.experiments.compare import CompareConfig, compare

        say("[extra] Image-to-video transfer: fast strategies side by side (xmodal compare --strategies fast)")
        results["compare"] = compare(CompareConfig(out=str(out / "compare"), strategies=("fast",),
                                                   progress=cfg.progress), say=say)["table"]
    return results


def _zero_shot(model: Any, root: Path, cfg: DemoConfig, split: Callable, say: Callable) -> dict[str, Any]:
    names = class_names(cfg.world)
    held = [f"{c} {s}" for c, s in held_out_combos(cfg.world)]
    templates = cfg.align.templates or DEFAULT_TEMPLATES
    say("[4/5] Zero-shot classification from class-name prompts")
    clf = build_zero_shot_classifier(model, names, templates)
    run = lambda rows, classes, c: zeroshot(model, [r["path"] for r in rows], [r["label"] for r in rows],  # noqa: E731
                                            classes, templates, root=root, progress=cfg.progress, classifier=c)
    seen = run(split("test_seen"), names, clf)
    gzsl = run(split("test_unseen"), names, clf)
    held_idx = [names.index(h) for h in held]
    zsl = run(split("test_unseen"), held, clf[held_idx])
    videos = read_manifest(world_paths(root)["videos"])
    test_videos = [r for r in videos if r["split"] == "test"]
    video = zeroshot(model, [r["path"] for r in test_videos], [f"{r['colour']} {r['shape']}" for r in test_videos],
                     names, templates, modality="video", root=root, progress=cfg.progress, classifier=clf)
    return {"seen": seen, "gzsl": gzsl, "zsl": zsl, "video": video, "held": held}


def _results(cfg, params, result, zs, align_seconds, total_seconds, root) -> dict[str, Any]:
    n_classes = len(class_names(cfg.world))
    rows = [
        ("seen combinations (test), among all classes", zs["seen"], n_classes),
        ("held-out combinations, among ALL classes (generalized zero-shot)", zs["gzsl"], n_classes),
        ("held-out combinations, among held-out classes only", zs["zsl"], len(zs["held"])),
        ("videos (frame-averaged), colour-shape among all classes", zs["video"], n_classes),
    ]
    summary = [{"evaluation": name, "items": len(r.targets), "classes": k, "top1": round(r.top1, 4),
                "top5": round(r.top5, 4), "chance": round(1 / k, 4)} for name, r, k in rows]
    return {
        "summary": summary,
        "zero_shot": {key: zs[key].to_dict() for key in ("seen", "gzsl", "zsl", "video")},
        "held_out_classes": zs["held"],
        "parameters": params,
        "training": {"epochs": result.history.epochs, "train_seconds": result.history.train_seconds,
                     "align_seconds": align_seconds, "cached_text_inputs": result.cached.get("text", 0)},
        "wall_seconds": total_seconds,
        "config": to_dict(cfg),
        "world": str(root),
    }


def _report(out: Path, cfg: DemoConfig, results: dict[str, Any], result: Any, zs: dict[str, Any]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    held = zs["held"]
    plots = [
        ("Training loss and validation zero-shot top-1", plot_history(result.history.epochs, out / "training.png")),
        ("Generalized zero-shot: per-class accuracy (red = never seen in training)",
         plot_per_class({**zs["seen"].per_class, **{h: zs["gzsl"].per_class[h] for h in held}}, out / "per_class.png",
                        highlight=held, title="per-class zero-shot top-1")),
        ("Confusion matrix, held-out combinations among all classes",
         plot_confusion(zs["gzsl"].confusion, zs["gzsl"].classnames, out / "confusion_gzsl.png",
                        "held-out combinations (rows) vs all classes", highlight=held)),
        ("Confusion matrix, seen combinations",
         plot_confusion(zs["seen"].confusion, zs["seen"].classnames, out / "confusion_seen.png", "seen combinations", held)),
    ]
    p = results["parameters"]
    sections = [
        ("What happened", "A LiT model (locked pretrained MiniLM sentence encoder + a vision tower trained from "
         "scratch) was aligned on image-caption pairs of the built-in world, then asked to name test images "
         f"by comparing them with text prompts. The combinations {', '.join(held)} never appeared in training."),
        ("Zero-shot results", markdown_table(results["summary"])),
        ("Cost", markdown_table([{"trainable parameters": p["trainable"], "total parameters": p["total"],
                                  "alignment seconds": round(results["training"]["align_seconds"], 1),
                                  "demo wall seconds": round(results["wall_seconds"], 1)}])),
        ("Training log", markdown_table([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items()}
                                         for e in result.history.epochs])),
    ]
    return write_report(out, results, "xmodal demo: cross-modal zero-shot transfer", sections, plots)
