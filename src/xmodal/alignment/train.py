"""Contrastive alignment of two towers on paired data (``xmodal align``).

Covers CLIP-style training of both towers, LiT (one tower locked; Zhai et al. 2022) and binding a
new modality to a frozen one. A tower whose trunk is frozen is encoded once into a FeatureCache and
only its head (if any) and its projection (if any) train, so a locked text tower costs one pass over
the captions in total. What a batch holds (classes, positives, augmented views, mixup, captions in
prompts) is ``batches.py``. Every epoch logs each side's mean pairwise cosine and effective rank
(``cos_<modality>``, ``rank_<modality>``), and a side that collapses gets one warning line.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from xmodal.alignment.batches import (augmenters, global_batch, loader, mix, plain_data, probe_rows, prompter,
                                      targets)
from xmodal.data.manifest import resolve_path
from xmodal.engine import distributed
from xmodal.engine.cache import FeatureCache, to_device
from xmodal.engine.diagnostics import collapse, spread
from xmodal.engine.fit import FitConfig, History, fit, precise_batchnorm
from xmodal.engine.losses import LOSSES
from xmodal.engine.precision import resolve_precision
from xmodal.errors import ConfigError
from xmodal.modalities import MODALITIES
from xmodal.tasks.prompts import PROMPTS
from xmodal.tasks.zeroshot import zeroshot


@dataclass
class AlignConfig:
    loss: str = "clip"  # registered contrastive loss: "clip" (InfoNCE) or "siglip" (sigmoid)
    modalities: tuple[str, str] = ("image", "text")  # the two towers to align
    columns: tuple[str, str] = ("path", "caption")  # manifest column holding each modality's input
    label_column: str = "label"  # rows sharing this column's value are positives; "" = pairs only
    repeat_positives: bool = True  # rows with the same item on either side (a repeated caption) are positives too
    balance: bool = False  # class-balanced batches (classes: label_column, else a side's repeated items)
    batch_size: int = 128  # pairs per batch (the number of negatives grows with it; under torchrun the global batch)
    num_workers: int = 0  # DataLoader worker processes for decoding
    cache_frozen: bool = True  # encode frozen trunks once instead of every epoch
    on_error: str = "raise"  # bad file: "raise" (fail fast) or "skip" (count, report, go on)
    seed: int = 0  # seeds shuffling and initialisation
    init_logit_scale: float | None = None  # reset log inverse temperature (SigLIP paper: log 10)
    init_logit_bias: float | None = None  # reset SigLIP bias (paper: -10)
    augment: dict = field(default_factory=dict)  # modality -> fields of its augmenter's config (AUGMENTERS): random views
    feature_dir: str = ""  # decoded files of augmented modalities, kept across epochs; "" = <out>/features or a temp folder
    caption_prompts: str = ""  # prompt set (PROMPTS) each training caption is written into at random; "" = as written
    diagnostics: bool = True  # log each side's mean pairwise cosine and effective rank; warn once on collapse
    precise_bn: bool = False  # at the end, recompute trained towers' BatchNorm statistics over the (plain) training rows
    templates: tuple[str, ...] = ()  # prompts of the per-epoch zero-shot validation; () = the classified modality's set
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=10, lr=1e-3, monitor="val_top1"))  # engine


@dataclass
class AlignResult:
    model: Any  # the aligned XModel
    history: History  # per-epoch loss and validation metrics
    cached: dict[str, int] = field(default_factory=dict)  # modality -> inputs encoded by its cache
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable training files
    warnings: list[str] = field(default_factory=list)  # one line per trained tower whose embeddings collapsed
    spread: dict[str, float] = field(default_factory=dict)  # eval_cos_* / eval_rank_* of the final model on a probe batch


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

    # a fully frozen tower caches its embedding (for video: the frame average; before any projection), else the trunk
    fn = (lambda b: model.encode_tower(modality, b)) if part == "all" else tower.trunk
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
    augmenters(cfg)
    if cfg.caption_prompts:
        PROMPTS.get(cfg.caption_prompts)


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


def _encoder(model: Any, rows: Sequence[dict[str, Any]], caches: dict[str, FeatureCache | None],
             device: torch.device, to_prompt: Callable[[str], str] | None) -> Callable[[str, str, dict[str, Any]], torch.Tensor]:
    """``encode(modality, column, batch)``: embeddings of a batch, from the cache when there is one (a
    caption written into a random prompt first, with ``to_prompt``)."""
    heads = {m: model.tower(m).head for m in caches if caches[m] is not None and frozen_part(model.tower(m)) == "trunk"}

    def encode(m: str, col: str, batch: dict[str, Any]) -> torch.Tensor:
        if caches[m] is None:
            return model.encode(m, to_device(batch[m], device))
        keys = [rows[int(i)][col] for i in batch["index"]]
        if to_prompt is not None and not MODALITIES.get(m).is_file:
            keys = [to_prompt(k) for k in keys]
        feats = caches[m].get(keys).to(device)
        feats = heads[m](feats) if m in heads else feats  # a cached trunk still trains its head
        return model.project(m, feats)  # ... and a projection after the tower trains too

    return encode


def _step(model: Any, rows: Sequence[dict[str, Any]], caches: dict[str, FeatureCache | None], cfg: AlignConfig,
          device: torch.device, live: Sequence[str], skipped: dict[tuple[str, str], None]) -> Callable[[Any], dict[str, Any]]:
    """The engine's step: the loss of a batch (its positives mixed where its audio was), and each side's spread.
    Under torchrun both sides are gathered over the ranks: the loss is the global batch's (global negatives)."""
    encode = _encoder(model, rows, caches, device, prompter(cfg))
    loss_fn, augs = LOSSES.get(cfg.loss), augmenters(cfg)

    def step(batch: dict[str, Any]) -> dict[str, Any]:
        skipped.update(dict.fromkeys(batch.get("skipped", [])))  # from batches, so worker processes' skips count too
        pos = targets(global_batch(batch), rows, cfg, device)
        batch, pos = mix(batch, augs, live, cfg.modalities[0], pos)
        a, b = (distributed.gather(encode(m, col, batch)) for m, col in zip(cfg.modalities, cfg.columns))
        out: dict[str, Any] = {"loss": loss_fn(a, b, model.logit_scale, model.logit_bias, labels=pos)}
        if cfg.diagnostics:
            for m, x in zip(cfg.modalities, (a, b)):
                out.update(spread(x, m))
        return out

    return step


def _trains(model: Any, modality: str) -> bool:
    """Whether any parameter of ``modality``'s tower trains (a projection alone does not count: it starts
    as the identity of a frozen tower, whose spread is the data's)."""
    return any(p.requires_grad for p in model.tower(modality).parameters())


def _watch(model: Any, cfg: AlignConfig, warnings: list[str]) -> Callable[[dict[str, float], str], None]:
    """``check(record, prefix)``: one warning line (stderr, and into ``warnings``) the first time a trained
    tower's embeddings collapse in ``record``'s ``{prefix}cos_*`` / ``{prefix}rank_*``."""
    trained = [m for m in cfg.modalities if _trains(model, m)]
    warned: set[str] = set()

    def check(record: dict[str, float], prefix: str) -> None:
        for m in trained:
            other = cfg.modalities[1 - cfg.modalities.index(m)]
            line = None if m in warned else collapse(record, m, other, prefix)
            if line:
                warned.add(m)
                warnings.append(line)
                tqdm.write(f"warning: {line}", file=sys.stderr)

    return check


def _probe(model: Any, data: Any, encode: Callable[[str, str, dict[str, Any]], torch.Tensor], cfg: AlignConfig
           ) -> Callable[[], dict[str, float]]:
    """``{"eval_cos_<m>", "eval_rank_<m>"}`` of a fixed batch of training rows in evaluation mode: what
    zero-shot and retrieval will see (BatchNorm's running statistics, no dropout, no augmentation), at the
    run's precision."""
    index = probe_rows(len(data), cfg.batch_size)
    precision = resolve_precision(cfg.fit.precision, next(model.parameters()).device)

    @torch.no_grad()
    def measure() -> dict[str, float]:
        batch = data.collate_fn([data[i] for i in index])
        if batch is None:
            return {}
        model.eval()
        with precision.autocast():
            feats = {m: encode(m, col, batch).float() for m, col in zip(cfg.modalities, cfg.columns)}
        return {f"eval_{k}": v for m, x in feats.items() for k, v in spread(x, m).items()}

    return measure


def _precise_bn(model: Any, data: Any, live: Sequence[str], cfg: AlignConfig, device: torch.device) -> None:
    """Recompute the BatchNorm statistics of the trained live towers over ``data`` (plain training rows), at
    the run's precision (the statistics themselves accumulate in fp32)."""
    from torch.utils.data import DataLoader

    model.eval()
    precision = resolve_precision(cfg.fit.precision, device)
    for m in [m for m in live if _trains(model, m)]:
        batches = DataLoader(data, batch_size=cfg.batch_size, num_workers=cfg.num_workers, collate_fn=data.collate_fn)
        with precision.autocast():
            precise_batchnorm(model.tower(m), batches, lambda batch, m=m: model.encode(m, to_device(batch[m], device)))


@contextmanager
def _feature_dir(cfg: AlignConfig, out: str | Path | None) -> Iterator[Path | None]:
    """Where augmented modalities keep decoded files: ``cfg.feature_dir``, ``out/features``, or a
    temporary folder removed afterwards; None when nothing is augmented."""
    if not cfg.augment:
        yield None
    elif cfg.feature_dir or out is not None:
        yield Path(cfg.feature_dir) if cfg.feature_dir else Path(out) / "features"
    else:
        with tempfile.TemporaryDirectory(prefix="xmodal-features-") as tmp:
            yield Path(tmp)


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
    live = {m: col for m, col in zip(cfg.modalities, cfg.columns) if caches[m] is None}
    skipped: dict[tuple[str, str], None] = {}
    warnings: list[str] = []
    with _feature_dir(cfg, out) as features:
        data, batches, gen = loader(model, rows, live, cfg, root, features)
        plain = plain_data(model, rows, live, cfg, root, features)
        step = _step(model, rows, caches, cfg, device, list(live), skipped)
        probe = _probe(model, plain, _encoder(model, rows, caches, device, None), cfg)
        check = _watch(model, cfg, warnings)
        # training batches from the second epoch on (the first averages in the random start)
        on_epoch_end = lambda record: check(record, "") if record["epoch"] >= min(2, cfg.fit.epochs) else None  # noqa: E731
        history = fit(step, model, batches, cfg.fit, evaluate=_evaluate(model, val_rows, cfg, root, probe), out=out,
                      on_epoch_end=on_epoch_end, generators={"shuffle": gen})
        if cfg.precise_bn:
            _precise_bn(model, plain, list(live), cfg, device)
        final = probe() if cfg.diagnostics else {}  # the trained model in evaluation mode, as zero-shot will see it
        check({"epoch": len(history.epochs), **final}, "eval_")
    if out is not None and distributed.is_main():
        model.save_pretrained(Path(out) / "model")
    cached = {m: c.computed for m, c in caches.items() if c is not None}
    unreadable = [s for c in caches.values() if c is not None for s in c.skipped.values()]
    return AlignResult(model=model, history=history, cached=cached, warnings=warnings, spread=final,
                       skipped=list(dict.fromkeys([*unreadable, *skipped, *data.skipped])))


def _evaluate(model: Any, val_rows: Sequence[dict[str, Any]] | None, cfg: AlignConfig, root: Path | None,
              probe: Callable[[], dict[str, float]]) -> Callable[[], dict[str, float]] | None:
    """The per-epoch evaluation: validation metrics (with ``val_rows``) and the probe's spread (with ``diagnostics``)."""
    if not val_rows and not cfg.diagnostics:
        return None
    return lambda: {**(validate(model, val_rows, cfg, root) if val_rows else {}), **(probe() if cfg.diagnostics else {})}


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
        res = zeroshot(model, items, labels, templates=cfg.templates or None, modality=mods[other], root=root,
                       on_error=cfg.on_error, progress=False)
        return {"val_top1": res.top1, "val_top5": res.top5}
    a, b = (embed(model, m, [r[c] for r in rows], root=root, on_error=cfg.on_error, progress=False)
            for m, c in zip(mods, cols))
    at = [{k: j for j, k in enumerate(e.kept)} for e in (a, b)]  # row -> its vector, per side
    both = [i for i in range(len(rows)) if i in at[0] and i in at[1]]  # pairs with both files readable
    va, vb = (e.vectors[[where[i] for i in both]] for e, where in zip((a, b), at))
    return {"val_" + k: v for k, v in retrieval_metrics(va @ vb.t()).items()}
