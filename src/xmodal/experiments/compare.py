"""Run many strategies on the same base model and data, side by side (``xmodal compare``).

Writes ``results.json``, ``report.md`` (one table row per strategy: accuracy, retrieval, trainable
parameters and their ratio to ``full``, train time, peak memory, clips/s, FLOPs per clip) and two PNG
plots of the efficiency frontier: accuracy vs trainable parameters and accuracy vs training time.

Without a model and data it uses the built-in world: a LiT model with a small ViT vision tower is
first aligned on the world's images (cached in ``out/base`` so re-runs skip it), then transferred to
the 8 motion classes of its clips. Finished strategies are cached in ``out/runs/<name>`` too.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from xmodal.alignment.train import AlignConfig
from xmodal.backbones.lit import LiTConfig
from xmodal.catalog import strategy_config
from xmodal.encoders.vision import VisionConfig
from xmodal.config import apply_overrides, to_dict
from xmodal.experiments.world import WorldConfig
from xmodal.engine.fit import FitConfig
from xmodal.errors import ConfigError
from xmodal.strategies.base import STRATEGIES
from xmodal.strategies.train import TransferConfig, split_rows, transfer

ALL: tuple[str, ...] = (
    "zero_shot", "linear_probe", "temporal_head:head.kind=mean", "temporal_head:head.kind=attention",
    "temporal_head:head.kind=transformer", "temporal_head:head.kind=conv", "side_network", "distill",
    "full", "partial:mode=last_k", "partial:mode=bitfit", "adapter", "adapter:temporal=false", "lora", "prompt",
)
FAST: tuple[str, ...] = ("zero_shot", "linear_probe", "temporal_head", "side_network")


@dataclass
class CompareConfig:
    out: str = "xmodal-compare"  # output folder (results.json, report.md, plots, runs/, base/)
    strategies: tuple[str, ...] = ("all",)  # "all", "fast", names, or "name:key=value,key=value" variants
    model: str = ""  # base model (checkpoint folder or CLIP/SigLIP name); "" = align a LiT ViT on the world
    data: str = ""  # video manifest or folder of class folders; "" = the built-in world's clips
    world: WorldConfig = field(default_factory=lambda: WorldConfig(
        images_train=40, clips_train=48, clips_val=16, clips_test=48))  # the built-in world (when data is ""):
    # 384 train / 128 val / 384 test clips of the 8 motion classes (one test clip = 0.26 points)
    base: LiTConfig = field(default_factory=lambda: LiTConfig(num_frames=8, vision=VisionConfig(
        arch="vit", width=96, depth=4, patch_size=8, image_size=32, heads=4)))  # LiT aligned first (model "")
    align: AlignConfig = field(default_factory=lambda: AlignConfig(
        batch_size=128, label_column="", fit=FitConfig(epochs=15, lr=2e-3, monitor="", progress=False)))  # alignment
    # of that LiT base: pairs only (no class positives), so the embedding keeps each caption's size and place
    transfer: TransferConfig = field(default_factory=TransferConfig)  # shared settings of every strategy run
    seeds: int = 1  # training runs per strategy, seeded transfer.seed, +1, ...; > 1 reports mean and std of
    # the accuracies (on small data one run's top-1 moves by several points with the seed alone)
    threads: int = 0  # torch CPU threads; 0 = torch's default
    progress: bool = False  # progress bars


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``"adapter:temporal=true,bottleneck=4"`` -> (label, "adapter", {"temporal": True, "bottleneck": 4})."""
    name, _, rest = spec.partition(":")
    STRATEGIES.get(name)
    options = apply_overrides({}, [kv for kv in rest.split(",") if kv]) if rest else {}
    pairs = [kv.split("=", 1) for kv in rest.split(",") if kv]
    label = name if not pairs else name + "[" + ",".join(k.split(".")[-1] + "=" + v for k, v in pairs) + "]"
    return label, name, options


def expand(strategies: Sequence[str]) -> list[str]:
    out: list[str] = []
    for s in strategies:
        out.extend(ALL if s == "all" else FAST if s == "fast" else [s])
    if not out:
        raise ConfigError("compare: no strategies given")
    return list(dict.fromkeys(out))


def prepare(cfg: CompareConfig, say: Callable[[str], None]) -> tuple[str, dict[str, list[dict[str, Any]]], Path]:
    """(base model reference, rows per split, data root): aligns the LiT base on the world if needed."""
    from xmodal.api import load
    from xmodal.data.manifest import load_media_manifest, read_manifest
    from xmodal.experiments.world import generate_world, motion_names, world_paths

    out = Path(cfg.out)
    if cfg.data:
        rows, root = load_media_manifest(cfg.data)
    else:
        say(f"world: generating / reusing {out / 'world'}")
        root = generate_world(out / "world", cfg.world, progress=cfg.progress)
        rows = read_manifest(world_paths(root)["videos"])
        assert sorted({r["label"] for r in rows}) == sorted(motion_names())
    if cfg.model:
        return cfg.model, split_rows(rows, cfg.transfer.label_column), root
    base = out / "base" / "model"
    if not (base / "xmodal.json").is_file():
        if cfg.data:
            raise ConfigError("compare: with your own data, give --model (a CLIP/SigLIP name or an aligned checkpoint)")
        say("base: aligning a LiT model (locked MiniLM + ViT from scratch) on the world's images")
        from xmodal.alignment.train import align

        images = read_manifest(world_paths(root)["images"])
        model = load("lit", **to_dict(cfg.base))
        t0 = time.perf_counter()
        res = align(model, [r for r in images if r["split"] == "train"], cfg.align,
                    val_rows=[r for r in images if r["split"] == "val"], root=root, out=out / "base")
        last = res.history.epochs[-1] if res.history.epochs else {}
        shown = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith("val_"))
        say(f"base: aligned in {time.perf_counter() - t0:.0f}s; last epoch {shown or 'no validation'}")
    return str(base.resolve()), split_rows(rows, cfg.transfer.label_column), root


def run_one(spec: str, base: str, splits: dict[str, list[dict[str, Any]]], root: Path, cfg: CompareConfig,
            say: Callable[[str], None], k: int = 0) -> dict[str, Any]:
    """Transfer a fresh copy of the base with one strategy spec and the ``k``-th seed; cached in
    ``out/runs/<label>`` (``<label>@seed<seed>`` for k > 0)."""
    import dataclasses

    from xmodal.api import load

    label, name, options = parse_spec(spec)
    seed = cfg.transfer.seed + k
    run = Path(cfg.out) / "runs" / (label if k == 0 else f"{label}@seed{seed}")
    done = run / "metrics.json"
    if done.is_file():
        say(f"{run.name}: cached in {run}")
        return {"seed": seed, **json.loads(done.read_text())}
    tcfg = dataclasses.replace(cfg.transfer, strategy=name, options=options, seed=seed)
    tcfg.fit = dataclasses.replace(tcfg.fit, progress=cfg.progress, verbose=False)
    model = load(base)
    t0 = time.perf_counter()
    res = transfer(model, splits["train"], tcfg, splits["val"] or None, splits["test"] or None, root=root, out=run, base=base)
    metrics = {"label": label, "paper": STRATEGIES.get(name).paper, "options": options, "seed": seed, **res.metrics,
               "wall_seconds": time.perf_counter() - t0}
    metrics.pop("confusion", None)
    done.write_text(json.dumps(metrics, indent=2, default=float))
    say(f"{run.name}: top-1 {metrics.get('top1', float('nan')):.3f}, {metrics['trainable_params']:,} trainable, "
        f"{metrics['train_seconds']:.1f}s")
    return metrics


SEEDED = ("top1", "top5", "mean_class_accuracy", "train_seconds")  # averaged over seeds


def run_seeds(spec: str, base: str, splits: dict[str, list[dict[str, Any]]], root: Path, cfg: CompareConfig,
              say: Callable[[str], None]) -> dict[str, Any]:
    """``cfg.seeds`` runs of one spec: the first run's record with ``SEEDED`` figures averaged, their
    standard deviations as ``<key>_std`` and every run's top-1 in ``top1_runs``."""
    runs = [run_one(spec, base, splits, root, cfg, say, k) for k in range(cfg.seeds)]
    if len(runs) == 1:
        return runs[0]
    merged = dict(runs[0], seeds=[r["seed"] for r in runs], top1_runs=[r["top1"] for r in runs])
    for key in SEEDED:
        values = torch.tensor([float(r.get(key, float("nan"))) for r in runs], dtype=torch.float64)
        merged[key], merged[f"{key}_std"] = float(values.mean()), float(values.std())
    return merged


def table_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per strategy (the Markdown / terminal table)."""
    full = next((r["trainable_params"] for r in results if r["label"] == "full"), None)
    rows = []
    for r in results:
        ret = r.get("retrieval", {})
        rows.append({
            "strategy": r["label"], "backbone": "frozen" if r["frozen_backbone"] else "tuned",
            "top1": round(r.get("top1", float("nan")), 4),
            **({"top1 std": round(r["top1_std"], 4), "seeds": len(r["seeds"])} if "top1_std" in r else {}),
            "top5": round(r.get("top5", float("nan")), 4),
            "mean class acc": round(r.get("mean_class_accuracy", float("nan")), 4),
            "v2t R@1": round(ret.get("v2t_R@1", float("nan")), 3), "t2v R@1": round(ret.get("t2v_R@1", float("nan")), 3),
            "trainable": r["trainable_params"],
            "% of full": round(100 * r["trainable_params"] / full, 2) if full else float("nan"),
            "total": r["total_params"], "train s": round(r["train_seconds"], 1),
            "s/epoch": round(r["seconds_per_epoch"], 3), "epochs": r["epochs"],
            "peak MB": round(r["peak_memory_mb"], 1), "clips/s": round(r.get("throughput_clips_per_s", float("nan")), 1),
            "MFLOPs/clip": round(r["flops_per_clip"] / 1e6, 2),
        })
    return rows


def plot_frontier(rows: list[dict[str, Any]], x: str, path: Path, xlabel: str) -> Path:
    """Top-1 against ``x`` (log scale), one labelled point per strategy, the Pareto frontier as a line."""
    from xmodal.eval.plots import _plt

    plt = _plt()
    pts = sorted((max(float(r[x]), 1e-3 if x != "trainable" else 1.0), float(r["top1"]), r["strategy"]) for r in rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for xv, yv, name in pts:
        ax.scatter(xv, yv, color="tab:blue" if "frozen" in str(next(r["backbone"] for r in rows if r["strategy"] == name)) else "tab:orange")
        ax.annotate(name, (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
    frontier, best = [], -1.0
    for xv, yv, _ in pts:
        if yv > best:
            frontier.append((xv, yv))
            best = yv
    ax.plot(*zip(*frontier), "--", color="grey", label="frontier (best top-1 so far)")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1")
    ax.set_title("blue: frozen backbone, orange: backbone tuned")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def compare(cfg: CompareConfig | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every strategy of ``cfg.strategies`` and write the report; returns the results."""
    from xmodal.eval.report import markdown_table, text_table, write_report

    cfg = cfg or CompareConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    specs = expand(cfg.strategies)
    for spec in specs:  # unknown names and options fail before any work
        _, name, options = parse_spec(spec)
        strategy_config(name, options)
    if cfg.seeds < 1:
        raise ConfigError(f"compare: seeds must be >= 1, got {cfg.seeds}")
    start = time.perf_counter()
    base, splits, root = prepare(cfg, say)
    results = [run_seeds(spec, base, splits, root, cfg, say) for spec in specs]
    rows = table_rows(results)
    out = Path(cfg.out) / "report"
    out.mkdir(parents=True, exist_ok=True)
    plots = [("Accuracy vs trainable parameters", plot_frontier(rows, "trainable", out / "accuracy_vs_params.png", "trainable parameters (log)")),
             ("Accuracy vs training time", plot_frontier(rows, "train s", out / "accuracy_vs_time.png", "training wall time, s (log)"))]
    wall = time.perf_counter() - start
    summary = {"table": rows, "runs": results, "base": base, "wall_seconds": wall, "config": to_dict(cfg),
               "splits": {k: len(v) for k, v in splits.items()}}
    memory_note = ("Peak memory is the growth of GPU memory during the run" if torch.cuda.is_available() else
                   "Peak memory is the growth of the process's resident memory during the run (CPU); strategies "
                   "run one after another in one process, so a run that fits in memory freed by an earlier one "
                   "shows ~0 — `xmodal transfer` measures one strategy in a fresh process")
    seeds = (f" Every strategy ran with {cfg.seeds} seeds ({cfg.transfer.seed}, +1, ...): accuracies and train time are "
             "means, `top1 std` their standard deviation." if cfg.seeds > 1 else "")
    sections = [("Setup", f"Base model: `{base}`. Clips: {summary['splits']}. Wall time {wall:.0f}s.{seeds} {memory_note}."),
                ("Results (test split)", markdown_table(rows)),
                ("Strategies", "\n".join(f"- **{r['label']}**: {r['paper']}" for r in results))]
    files = write_report(out, summary, "xmodal compare: image-to-video transfer strategies", sections, plots)
    seeded = ["top1 std"] if cfg.seeds > 1 else []
    say("\n" + text_table(rows, ["strategy", "backbone", "top1", *seeded, "mean class acc", "v2t R@1", "trainable",
                                 "% of full", "train s", "s/epoch", "clips/s", "MFLOPs/clip"]))
    say(f"\nwall time {wall:.0f}s; report: {files['report']}")
    return summary
