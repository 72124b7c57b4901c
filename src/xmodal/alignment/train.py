"""Contrastive alignment of two towers on paired data (``xmodal align``).

Covers CLIP-style training of both towers, LiT (one tower locked; Zhai et al. 2022) and binding a
new modality to a frozen one. A tower whose trunk is frozen is encoded once into a FeatureCache and
only its head (if any) trains, so a locked text tower costs one pass over the captions in total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from xmodal.engine.losses import LOSSES
from xmodal.data.manifest import MediaDataset, resolve_path
from xmodal.engine.cache import FeatureCache, to_device
from xmodal.engine.fit import FitConfig, History, fit
from xmodal.errors import ConfigError
from xmodal.modalities import MODALITIES
from xmodal.tasks.zeroshot import DEFAULT_TEMPLATES, zeroshot


@dataclass
class AlignConfig:
    loss: str = "clip"  # registered contrastive loss: "clip" (InfoNCE) or "siglip" (sigmoid)
    modalities: tuple[str, str] = ("image", "text")  # the two towers to align
    columns: tuple[str, str] = ("path", "caption")  # manifest column holding each modality's input
    label_column: str = "label"  # rows sharing this column's value are positives; "" = pairs only
    batch_size: int = 128  # pairs per batch (the number of negatives grows with it)
    num_workers: int = 0  # DataLoader worker processes for decoding
    cache_frozen: bool = True  # encode frozen trunks once instead of every epoch
    on_error: str = "raise"  # bad file: "raise" (fail fast) or "skip" (count, report, go on)
    seed: int = 0  # seeds shuffling and initialisation
    init_logit_scale: float | None = None  # reset log inverse temperature (SigLIP paper: log 10)
    init_logit_bias: float | None = None  # reset SigLIP bias (paper: -10)
    templates: tuple[str, ...] = DEFAULT_TEMPLATES  # prompts of the per-epoch zero-shot validation
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=10, lr=1e-3, monitor="val_top1"))  # engine


@dataclass
class AlignResult:
    model: Any  # the aligned XModel
    history: History  # per-epoch loss and validation metrics
    cached: dict[str, int] = field(default_factory=dict)  # modality -> inputs encoded by its cache
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable training files


def frozen_part(tower: nn.Module) -> str:
    """"all" if no parameter of ``tower`` trains, "trunk" if only its head does, else "none"."""
    trainable = {id(p) for p in tower.parameters() if p.requires_grad}
    if not trainable:
        return "all"
    if trainable <= {id(p) for p in tower.head_layer.parameters()}:
        return "trunk"
    return "none"


def _make_cache(model: Any, modality: str, root: Path | None, cfg: AlignConfig, device: torch.device) -> FeatureCache | None:
    tower = model.tower(modality)
    part = frozen_part(tower)
    mod = MODALITIES.get(modality)
    # a sequence of frames caches only the model's embedding (the frame average): its tower's trunk reads frames
    if not cfg.cache_frozen or part == "none" or (mod.frames_of is not None and part != "all"):
        return None
    spec = model.spec(modality)

    def load(item: Any) -> Any:
        return mod.load(resolve_path(root, item) if mod.is_file else item, spec)

    # a fully frozen tower caches the model's embedding (for video: the frame average), else the trunk
    fn = (lambda b: model.encode(modality, b)) if part == "all" else tower.trunk
    batch_size = 32 if mod.frames_of is not None else 256  # a clip holds many frames
    return FeatureCache(fn, load, lambda items: mod.collate(items, spec), batch_size=batch_size, device=device)


def _check(model: Any, cfg: AlignConfig) -> None:
    LOSSES.get(cfg.loss)
    if len(cfg.modalities) != 2 or len(cfg.columns) != 2:
        raise ConfigError("align: modalities and columns must each name two entries")
    for m in cfg.modalities:
        model.spec(m)
    if cfg.on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error {cfg.on_error!r} is not 'raise' or 'skip'")


def _fill_caches(model: Any, rows: Sequence[dict[str, Any]], val_rows: Sequence[dict[str, Any]] | None,
                 cfg: AlignConfig, root: Path | None, device: torch.device) -> dict[str, FeatureCache | None]:
    """Per aligned modality: its feature cache filled from ``rows`` and ``val_rows`` (frozen towers), else None."""
    caches = {m: _make_cache(model, m, root, cfg, device) for m in cfg.modalities}
    for m, col in zip(cfg.modalities, cfg.columns):
        if caches[m] is not None:
            values = [r[col] for r in list(rows) + list(val_rows or [])]
            caches[m].fill(values, desc=f"caching frozen {m}", progress=cfg.fit.progress, skip_errors=cfg.on_error == "skip")
    return caches


def _readable(rows: Sequence[dict[str, Any]] | None, caches: dict[str, FeatureCache | None], cfg: AlignConfig
              ) -> list[dict[str, Any]] | None:
    """The ``rows`` none of whose cached inputs was skipped as unreadable (``on_error="skip"``)."""
    if rows is None:
        return None
    bad = [(col, caches[m].skipped) for m, col in zip(cfg.modalities, cfg.columns) if caches[m] is not None]
    return [r for r in rows if not any(r[col] in skipped for col, skipped in bad)]


def _loader(model: Any, rows: Sequence[dict[str, Any]], caches: dict[str, FeatureCache | None], cfg: AlignConfig,
            root: Path | None) -> tuple[MediaDataset, DataLoader]:
    """The dataset of the modalities encoded live (not cached) and its shuffled loader (seeded ``cfg.seed``)."""
    live = {m: col for m, col in zip(cfg.modalities, cfg.columns) if caches[m] is None}
    specs = {m: model.spec(m) for m in live}
    data = MediaDataset(list(rows), live, specs, root=root, label_column=cfg.label_column or None, on_error=cfg.on_error)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, drop_last=len(data) > cfg.batch_size,
                        num_workers=cfg.num_workers, collate_fn=data.collate_fn, generator=gen)
    return data, loader


def _encoder(model: Any, rows: Sequence[dict[str, Any]], caches: dict[str, FeatureCache | None],
             device: torch.device) -> Callable[[str, str, dict[str, Any]], torch.Tensor]:
    """``encode(modality, column, batch)``: embeddings of a batch, from the cache when there is one."""
    heads = {m: model.tower(m).head for m in caches if caches[m] is not None and frozen_part(model.tower(m)) == "trunk"}

    def encode(m: str, col: str, batch: dict[str, Any]) -> torch.Tensor:
        if caches[m] is None:
            return model.encode(m, to_device(batch[m], device))
        keys = [rows[int(i)][col] for i in batch["index"]]
        feats = caches[m].get(keys).to(device)
        return heads[m](feats) if m in heads else feats  # a cached trunk still trains its head

    return encode


def align(
    model: Any,
    rows: Sequence[dict[str, Any]],
    cfg: AlignConfig | None = None,
    val_rows: Sequence[dict[str, Any]] | None = None,
    root: str | Path | None = None,
    out: str | Path | None = None,
) -> AlignResult:
    """Align ``cfg.modalities`` of ``model`` contrastively on manifest ``rows`` (paths relative to
    ``root``). With ``val_rows``, each epoch logs zero-shot top-1 (when one side is text and rows have
    labels) or retrieval R@1. With ``out``, training resumes from ``out`` and the model is saved to
    ``out/model``."""
    cfg = cfg or AlignConfig()
    _check(model, cfg)
    torch.manual_seed(cfg.seed)
    root = Path(root) if root is not None else None
    device = next(model.parameters()).device
    _init_logits(model, cfg)
    caches = _fill_caches(model, rows, val_rows, cfg, root, device)
    rows, val_rows = _readable(rows, caches, cfg), _readable(val_rows, caches, cfg)
    data, loader = _loader(model, rows, caches, cfg, root)
    loss_fn = LOSSES.get(cfg.loss)
    encode = _encoder(model, rows, caches, device)
    skipped: dict[tuple[str, str], None] = {}  # from batches, so worker processes' skips count too

    def step(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        skipped.update(dict.fromkeys(batch.get("skipped", [])))
        a, b = (encode(m, col, batch) for m, col in zip(cfg.modalities, cfg.columns))
        labels = batch.get("labels") if cfg.label_column else None
        return {"loss": loss_fn(a, b, model.logit_scale, model.logit_bias, labels=labels)}

    evaluate = (lambda: validate(model, val_rows, cfg, root)) if val_rows else None
    history = fit(step, model, loader, cfg.fit, evaluate=evaluate, out=out, generators={"shuffle": loader.generator})
    if out is not None:
        model.save_pretrained(Path(out) / "model")
    cached = {m: c.computed for m, c in caches.items() if c is not None}
    unreadable = [s for c in caches.values() if c is not None for s in c.skipped.values()]
    return AlignResult(model=model, history=history, cached=cached,
                       skipped=list(dict.fromkeys([*unreadable, *skipped, *data.skipped])))


def _init_logits(model: Any, cfg: AlignConfig) -> None:
    with torch.no_grad():
        if cfg.init_logit_scale is not None:
            model.logit_scale.fill_(cfg.init_logit_scale)
        if cfg.init_logit_bias is not None:
            model.logit_bias.fill_(cfg.init_logit_bias)
    model.logit_bias.requires_grad_(LOSSES.get(cfg.loss).uses_bias)


def validate(model: Any, rows: Sequence[dict[str, Any]], cfg: AlignConfig, root: Path | None) -> dict[str, float]:
    """Zero-shot top-1 of the other side when one side is text (its items are strings, not files) and
    rows have labels, else retrieval R@1 of the pair."""
    from xmodal.eval.metrics import retrieval_metrics
    from xmodal.tasks.embed import embed

    mods, cols = cfg.modalities, cfg.columns
    texts = [i for i, m in enumerate(mods) if not MODALITIES.get(m).is_file]
    if texts and cfg.label_column:
        other = 1 - texts[0]
        items = [r[cols[other]] for r in rows]
        labels = [r[cfg.label_column] for r in rows]
        res = zeroshot(model, items, labels, templates=cfg.templates, modality=mods[other], root=root,
                       on_error=cfg.on_error, progress=False)
        return {"val_top1": res.top1, "val_top5": res.top5}
    a, b = (embed(model, m, [r[c] for r in rows], root=root, on_error=cfg.on_error, progress=False)
            for m, c in zip(mods, cols))
    at = [{k: j for j, k in enumerate(e.kept)} for e in (a, b)]  # row -> its vector, per side
    both = [i for i in range(len(rows)) if i in at[0] and i in at[1]]  # pairs with both files readable
    va, vb = (e.vectors[[where[i] for i in both]] for e, where in zip((a, b), at))
    return {"val_" + k: v for k, v in retrieval_metrics(va @ vb.t()).items()}
