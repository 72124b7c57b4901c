"""Transfer an aligned model to video classification with one strategy, on the one engine.

``transfer(model, train_rows, TransferConfig(strategy="lora"), val_rows, test_rows, root, out)``:

1. decodes every clip once (``ClipSet``: sampled, preprocessed frames kept in memory);
2. applies the strategy (wrap / inject) to get a :class:`VideoClassifier`;
3. if the strategy leaves the backbone frozen (``strategy.frozen``; nothing for the user to set),
   runs the backbone once per clip and trains on the cached outputs, else re-encodes every batch;
4. trains with :func:`xmodal.engine.fit.fit` (AdamW, cosine schedule, accumulation, AMP on CUDA,
   early stopping on validation top-1, best weights restored, checkpoints with resume, log.jsonl);
5. measures classification (top-1/top-5, mean class accuracy), video-text retrieval when the clips
   have captions, and efficiency (parameters, train time, peak memory, clips/s, FLOPs per clip);
6. with ``out``, saves ``out/model`` (only what the strategy adds + a pointer to the base).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from xmodal.config import from_dict
from xmodal.data.manifest import MediaDataset
from xmodal.engine.fit import FitConfig, History, fit
from xmodal.errors import ConfigError, DataError
from xmodal.strategies.base import STRATEGIES, VideoClassifier

DEFAULT_LR = 3e-3  # heads, adapters, LoRA, prompts; strategies that unfreeze backbone weights scale it
# for those weights with ``backbone_lr_scale``


@dataclass
class TransferConfig:
    strategy: str = "temporal_head"  # registered strategy name (see xmodal.transfer.STRATEGIES)
    options: dict[str, Any] = field(default_factory=dict)  # the strategy's config fields, e.g. {"rank": 8}
    path_column: str = "path"  # manifest column with the video files
    label_column: str = "label"  # manifest column with the class names
    caption_column: str = "caption"  # manifest column with captions (retrieval); missing = no retrieval
    batch_size: int = 32  # clips per batch
    lr: float = 0.0  # peak learning rate; 0 = the strategy's ``default_lr`` (LoRA), else fit.lr
    num_workers: int = 0  # DataLoader worker processes for decoding
    on_error: str = "raise"  # unreadable clip: "raise" or "skip" (counted, listed)
    seed: int = 0  # seeds initialisation and shuffling
    fit: FitConfig = field(default_factory=lambda: FitConfig(
        epochs=60, lr=DEFAULT_LR, monitor="val_top1", patience=20, restore_best=True, weight_decay=0.01,
        max_minutes=1.0))  # engine: per-strategy budget keeps a full compare within minutes on a CPU


@dataclass
class ClipSet:
    pixels: torch.Tensor  # [N, T, 3, H, W] preprocessed frames
    targets: torch.Tensor  # [N] class indices
    captions: list[str] | None  # caption per clip, or None
    paths: list[str]  # file per clip
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable files and why


@dataclass
class TransferResult:
    classifier: VideoClassifier  # the trained model (base + strategy)
    metrics: dict[str, Any]  # classification, retrieval and efficiency figures on the test clips
    history: History  # the engine's per-epoch records


def load_clips(model: Any, rows: Sequence[dict[str, Any]], classes: Sequence[str], root: Path | None,
               cfg: TransferConfig, desc: str = "clips") -> ClipSet:
    """Decode and preprocess the clips of ``rows`` (frames as ``model.spec("video")`` says)."""
    if not rows:
        raise DataError(desc, "no clips")
    for col in (cfg.path_column, cfg.label_column):
        if col not in rows[0]:
            raise DataError(desc, f"no column {col!r}; columns are {sorted(rows[0])}")
    index = {c: i for i, c in enumerate(classes)}
    data = MediaDataset(list(rows), {"video": cfg.path_column}, {"video": model.spec("video")}, root=root,
                        label_column=cfg.label_column, on_error=cfg.on_error, manifest=desc)
    loader = DataLoader(data, batch_size=16, num_workers=cfg.num_workers, collate_fn=data.collate_fn)
    pixels, kept, skipped = [], [], []
    for batch in loader:
        if batch is None:
            continue
        skipped.extend(batch["skipped"])
        pixels.append(batch["video"]["pixel_values"])
        kept.extend(int(i) for i in batch["index"])
    skipped = list(dict.fromkeys([*skipped, *data.skipped]))
    if not kept:
        raise DataError(desc, f"every clip was unreadable ({len(skipped)} skipped)")
    labels = [str(rows[i][cfg.label_column]) for i in kept]
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise DataError(desc, f"class(es) {unknown[:5]} are not among the training classes {list(classes)[:10]}")
    has_caps = cfg.caption_column and all(str(rows[i].get(cfg.caption_column) or "").strip() for i in kept)
    captions = [str(rows[i][cfg.caption_column]) for i in kept] if has_caps else None
    return ClipSet(torch.cat(pixels), torch.tensor([index[x] for x in labels]), captions,
                   [str(rows[i][cfg.path_column]) for i in kept], skipped)


def build(model: Any, classes: Sequence[str], cfg: TransferConfig) -> VideoClassifier:
    """Apply ``cfg.strategy`` (with ``cfg.options``) to ``model``."""
    strategy = STRATEGIES.get(cfg.strategy)
    options = from_dict(strategy.config_cls, cfg.options, where=f"{cfg.strategy} options")
    torch.manual_seed(cfg.seed)
    return strategy.apply(model, classes, options)


@torch.no_grad()
def _cache(clf: VideoClassifier, clips: ClipSet, batch_size: int) -> dict[str, torch.Tensor]:
    """The strategy's training inputs of every clip, computed once (frozen backbones)."""
    clf.eval()
    device = next(clf.parameters()).device
    parts: list[dict[str, torch.Tensor]] = []
    for i in range(0, len(clips.pixels), batch_size):
        out = clf.cache_inputs(clips.pixels[i : i + batch_size].to(device))
        parts.append({k: v.float().cpu() if k != "pixel_values" else v.cpu() for k, v in out.items()})
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _inputs(clf: VideoClassifier, clips: ClipSet, batch_size: int) -> dict[str, torch.Tensor]:
    return _cache(clf, clips, batch_size) if clf.frozen else {"pixel_values": clips.pixels}


@torch.no_grad()
def predict(clf: VideoClassifier, inputs: dict[str, torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    """``[N, C]`` logits from cached ``features`` (frozen) or from ``pixel_values``."""
    clf.eval()
    device = next(clf.parameters()).device
    n = len(next(iter(inputs.values())))
    out = []
    for i in range(0, n, batch_size):
        if "features" in inputs:
            out.append(clf.classify(inputs["features"][i : i + batch_size].to(device)).float().cpu())
        else:
            out.append(clf(inputs["pixel_values"][i : i + batch_size].to(device)).float().cpu())
    return torch.cat(out)


def train(clf: VideoClassifier, train_clips: ClipSet, val_clips: ClipSet | None, cfg: TransferConfig,
          out: Path | None = None) -> tuple[History, float]:
    """Train ``clf`` on the engine; returns the history and the seconds spent caching features."""
    t0 = time.perf_counter()
    inputs = _inputs(clf, train_clips, cfg.batch_size)
    val = _inputs(clf, val_clips, cfg.batch_size) if val_clips is not None else None
    cache_seconds = time.perf_counter() - t0 if clf.frozen else 0.0
    if not any(p.requires_grad for p in clf.parameters()):
        return History(), cache_seconds
    device = next(clf.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(range(len(train_clips.targets)), batch_size=cfg.batch_size, shuffle=True, generator=gen)

    def step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = {k: v[idx].to(device) for k, v in inputs.items()}
        return clf.loss(batch, train_clips.targets[idx].to(device))

    def evaluate() -> dict[str, float]:
        logits = predict(clf, val, cfg.batch_size)
        return {"val_top1": float((logits.argmax(1) == val_clips.targets).float().mean())}

    fit_cfg = _fit_config(cfg, STRATEGIES.get(clf.strategy))
    history = fit(step, clf, loader, fit_cfg, evaluate=evaluate if val is not None else None,
                  out=out / "train" if out is not None else None)
    return history, cache_seconds


def _fit_config(cfg: TransferConfig, strategy: Any) -> FitConfig:
    """The engine settings of a run: ``cfg.lr`` (else the strategy's ``default_lr``, else ``cfg.fit.lr``)
    for what the strategy adds, scaled by the strategy's ``backbone_lr_scale`` for the base weights it
    unfreezes (full / partial tuning: a pretrained backbone moves gently under a freshly initialised head)."""
    import dataclasses

    scales = dict(cfg.fit.lr_scales)
    scales.setdefault("base.", getattr(strategy, "backbone_lr_scale", 1.0))
    lr = cfg.lr if cfg.lr > 0 else getattr(strategy, "default_lr", cfg.fit.lr)
    return dataclasses.replace(cfg.fit, lr=lr, lr_scales=scales)


def evaluate(clf: VideoClassifier, clips: ClipSet, batch_size: int = 32) -> dict[str, Any]:
    """Classification metrics and (with captions) video-text retrieval on ``clips``."""
    from xmodal.tasks.classify import classification_metrics

    metrics = classification_metrics(predict(clf, {"pixel_values": clips.pixels}, batch_size), clips.targets, clf.classes)
    if clips.captions is not None:
        metrics["retrieval"] = retrieve(clf, clips, batch_size)
    return metrics


@torch.no_grad()
def retrieve(clf: VideoClassifier, clips: ClipSet, batch_size: int = 32) -> dict[str, float]:
    """Video-text retrieval between the clips' embeddings and their captions' embeddings."""
    from xmodal.modalities import MODALITIES
    from xmodal.tasks.retrieve import text_retrieval

    clf.eval()
    device = next(clf.parameters()).device
    video = torch.cat([clf.embed(clips.pixels[i : i + batch_size].to(device)).float().cpu()
                       for i in range(0, len(clips.pixels), batch_size)])
    spec, text = clf.base.spec("text"), MODALITIES.get("text")
    texts = []
    for i in range(0, len(clips.captions), 128):
        batch = text.collate([text.load(c, spec) for c in clips.captions[i : i + 128]], spec)
        texts.append(clf.base.encode("text", {k: v.to(device) for k, v in batch.items()}).float().cpu())
    return text_retrieval(video, torch.cat(texts), clips.captions)


def split_rows(rows: Sequence[dict[str, Any]], label_column: str = "label", every: int = 5
               ) -> dict[str, list[dict[str, Any]]]:
    """Train/val/test rows: by the ``split`` column when rows have one, else deterministically per
    class (every ``every``-th clip of a class to test, the one after it to val, the rest to train)."""
    if rows and "split" in rows[0]:
        return {s: [r for r in rows if r.get("split") == s] for s in ("train", "val", "test")}
    out: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    seen: dict[str, int] = {}
    for r in rows:
        k = seen[r.get(label_column)] = seen.get(r.get(label_column), -1) + 1
        out["test" if k % every == every - 1 else "val" if k % every == every - 2 else "train"].append(r)
    return out


def transfer(model: Any, train_rows: Sequence[dict[str, Any]], cfg: TransferConfig | None = None,
             val_rows: Sequence[dict[str, Any]] | None = None, test_rows: Sequence[dict[str, Any]] | None = None,
             root: str | Path | None = None, out: str | Path | None = None, base: str | Path | None = None,
             classes: Sequence[str] | None = None) -> TransferResult:
    """Transfer ``model`` to classify the videos of ``train_rows`` with ``cfg.strategy``.

    Metrics are measured on ``test_rows`` (else ``val_rows``). With ``out``, the run folder holds the
    engine's log and resumable state (``out/train``) and the transfer (``out/model``), which points
    to ``base`` (a checkpoint folder or hub name) or, when None, to a copy saved in ``out/base``."""
    from xmodal.eval.efficiency import PeakMemory, flops_per_clip, parameter_counts, throughput

    cfg = cfg or TransferConfig()
    from_dict(STRATEGIES.get(cfg.strategy).config_cls, cfg.options, where=f"{cfg.strategy} options")  # fail before decoding
    if cfg.on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error {cfg.on_error!r} is not 'raise' or 'skip'")
    root = Path(root) if root is not None else None
    out = Path(out) if out is not None else None
    classes = list(classes) if classes is not None else sorted({str(r[cfg.label_column]) for r in train_rows if cfg.label_column in r})
    train_clips = load_clips(model, train_rows, classes, root, cfg, "train rows")
    val_clips = load_clips(model, val_rows, classes, root, cfg, "val rows") if val_rows else None
    test_clips = load_clips(model, test_rows, classes, root, cfg, "test rows") if test_rows else val_clips
    if out is not None and base is None:  # before the strategy injects into (or trains) the model
        base = model.save_pretrained(out / "base").resolve()
    clf = build(model, classes, cfg)
    counts = parameter_counts(clf)
    device = next(clf.parameters()).device
    with PeakMemory(device) as memory:
        t0 = time.perf_counter()
        history, cache_seconds = train(clf, train_clips, val_clips, cfg, out)
        train_seconds = time.perf_counter() - t0
    metrics: dict[str, Any] = {"strategy": cfg.strategy, "frozen_backbone": clf.frozen}
    if test_clips is not None:
        metrics.update(evaluate(clf, test_clips, cfg.batch_size))
        metrics["throughput_clips_per_s"] = throughput(clf, test_clips.pixels, cfg.batch_size)
    epochs = max(1, len(history.epochs))
    metrics.update({
        "trainable_params": counts["trainable"], "total_params": counts["total"],
        "train_seconds": train_seconds, "cache_seconds": cache_seconds, "epochs": len(history.epochs),
        "seconds_per_epoch": history.train_seconds / epochs, "peak_memory_mb": memory.peak_mb,
        "flops_per_clip": flops_per_clip(clf, train_clips.pixels[0].to(device)),
        "skipped": [{"file": f, "problem": p} for f, p in train_clips.skipped],
    })
    if out is not None:
        clf.save(out / "model", base)
    return TransferResult(clf, metrics, history)
