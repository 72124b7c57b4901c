"""What a training batch of ``align`` is made of: its rows, their views, and which pairs are positives.

- Classes: a row's class is its label (``label_column``), else its anchor item when items repeat
  (many rows captioned "the sound of dog"). With ``balance``, batches hold the classes evenly
  (``data/sampling.py``).
- Positives: two rows are positives when they share a label, or (``repeat_positives``) the same item
  on either side, so that a repeated caption is never a negative of itself.
- Views: a live modality with a registered augmenter (``AUGMENTERS``, named in ``augment``) is read
  as a fresh random view each epoch, decoded once into ``feature_dir``; one such side may be mixed
  within the batch (mixup), its targets mixed in the same proportion.
- Captions in prompts: with ``caption_prompts``, each training caption is written into a random
  template of that prompt set, as zero-shot will read class names.
- Under torchrun each rank holds a slice of the global batch: the positives are those of the global
  batch (:func:`global_batch`), and a mixed side's targets are mixed on the rank's own rows and gathered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import torch
from torch.utils.data import DataLoader

from xmodal.config import from_dict
from xmodal.data.manifest import MediaDataset
from xmodal.data.sampling import BalancedBatches
from xmodal.engine import distributed
from xmodal.engine.cache import DiskCache
from xmodal.errors import ConfigError
from xmodal.modalities import AUGMENTERS, MODALITIES
from xmodal.tasks.prompts import PROMPTS


def classes(rows: Sequence[dict[str, Any]], label_column: str, columns: Sequence[str]) -> list[Hashable] | None:
    """Each row's class: its label, else its item of the last column whose items repeat; None when no
    class holds two rows."""
    candidates = [[r[label_column] for r in rows]] if label_column else [[r[c] for r in rows] for c in reversed(columns)]
    for values in candidates:
        if len(set(values)) < len(values):
            return values
    return None


def augmenters(cfg: Any) -> dict[str, Any]:
    """Modality -> its augmenter's config (from ``cfg.augment``); a ConfigError for a modality without
    an augmenter or an unknown config key."""
    out = {}
    for modality, fields in cfg.augment.items():
        if modality not in AUGMENTERS:
            raise ConfigError(f"augment: no augmenter for {modality!r}; augmenters: {', '.join(AUGMENTERS.names()) or 'none'}")
        out[modality] = from_dict(AUGMENTERS.get(modality).config_cls, dict(fields or {}), where=f"augment.{modality}")
    return out


def prompter(cfg: Any) -> Callable[[str], str] | None:
    """``caption -> caption written into a random template`` of ``cfg.caption_prompts``; None when unset."""
    if not cfg.caption_prompts:
        return None
    templates = PROMPTS.get(cfg.caption_prompts)
    return lambda caption: templates[int(torch.randint(len(templates), ()))].format(caption)


def loader(model: Any, rows: Sequence[dict[str, Any]], live: dict[str, str], cfg: Any, root: Path | None,
           feature_dir: Path | None) -> tuple[MediaDataset, DataLoader, torch.Generator]:
    """The dataset of the ``live`` modalities (modality -> column), its loader (class-balanced batches
    when ``cfg.balance`` and rows have classes, else shuffled ones) and the generator its order draws
    from (seeded ``cfg.seed``; a resumed run restores it)."""
    specs = {m: model.spec(m) for m in live}
    views: dict[str, Callable[[Any], Any]] = {}
    cache = DiskCache(feature_dir) if feature_dir is not None else None
    for m, aug_cfg in augmenters(cfg).items():
        if m in live:
            views[m] = lambda path, m=m, aug_cfg=aug_cfg: AUGMENTERS.get(m).view(path, specs[m], aug_cfg, cache)
    to_prompt = prompter(cfg)
    for m in live:
        if to_prompt is not None and not MODALITIES.get(m).is_file:
            views[m] = lambda caption, m=m: MODALITIES.get(m).load(to_prompt(caption), specs[m])
    data = MediaDataset(list(rows), live, specs, root=root, label_column=cfg.label_column or None,
                        on_error=cfg.on_error, views=views)
    gen = torch.Generator().manual_seed(cfg.seed)
    groups = classes(rows, cfg.label_column, cfg.columns) if cfg.balance else None
    if groups is not None:
        sampler = BalancedBatches(groups, cfg.batch_size, gen)
        return data, DataLoader(data, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=data.collate_fn), gen
    return data, DataLoader(data, batch_size=cfg.batch_size, shuffle=True, drop_last=len(data) > cfg.batch_size,
                            num_workers=cfg.num_workers, collate_fn=data.collate_fn, generator=gen), gen


def plain_data(model: Any, rows: Sequence[dict[str, Any]], live: dict[str, str], cfg: Any, root: Path | None,
               feature_dir: Path | None) -> MediaDataset:
    """The ``live`` modalities of ``rows`` as evaluation reads them (no augmentation, captions as written;
    augmented modalities from their decoded files in ``feature_dir``): for BatchNorm statistics and probes."""
    specs = {m: model.spec(m) for m in live}
    cache = DiskCache(feature_dir) if feature_dir is not None else None
    views = {m: (lambda path, m=m, aug_cfg=aug_cfg: AUGMENTERS.get(m).plain(path, specs[m], aug_cfg, cache))
             for m, aug_cfg in augmenters(cfg).items() if m in live}
    return MediaDataset(list(rows), live, specs, root=root, label_column=None, on_error=cfg.on_error, views=views)


def probe_rows(n: int, size: int) -> list[int]:
    """``size`` (at most) row indices spread evenly over ``n`` rows: a fixed batch to measure each epoch."""
    return list(range(0, n, max(1, n // size)))[:size]


def same(values: Sequence[Hashable], device: torch.device) -> torch.Tensor:
    """``[B, B]`` bool: where two values are equal."""
    index = {v: k for k, v in enumerate(dict.fromkeys(values))}
    ids = torch.tensor([index[v] for v in values], device=device)
    return ids[:, None] == ids[None, :]


def global_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """The ``index`` and ``labels`` of the global batch whose slice ``batch`` is (under torchrun; else its own)."""
    return {k: distributed.gather_objects([int(v) if k == "index" else v for v in batch[k]])
            for k in ("index", "labels") if k in batch}


def targets(batch: dict[str, Any], rows: Sequence[dict[str, Any]], cfg: Any, device: torch.device) -> torch.Tensor:
    """``[B, B]`` positives of a batch: the diagonal, same labels (``label_column``) and, with
    ``repeat_positives``, the same item on either side."""
    picked = [rows[int(i)] for i in batch["index"]]
    pos = torch.eye(len(picked), dtype=torch.bool, device=device)
    if cfg.label_column:
        pos |= same(batch["labels"], device)
    if cfg.repeat_positives:
        for col in cfg.columns:
            pos |= same([str(r[col]) for r in picked], device)
    return pos.float()


def mix(batch: dict[str, Any], augs: dict[str, Any], live: Sequence[str], first: str, pos: torch.Tensor
        ) -> tuple[dict[str, Any], torch.Tensor]:
    """The batch with its first augmented live side mixed (when its augmenter mixes this batch) and
    the positives ``pos`` mixed in the same proportion: their rows when that side is ``first`` (the
    loss's ``a``), else their columns."""
    for m, aug_cfg in augs.items():
        if m not in live:
            continue
        mixed = AUGMENTERS.get(m).mix(batch[m], aug_cfg)
        if mixed is None and not distributed.active():
            return batch, pos
        rows = pos if m == first else pos.t()  # the mixed side's rows of the (global) positives
        start, end = distributed.share(len(batch["index"]))
        own = rows[start:end]
        if mixed is not None:
            inputs, perm, w = mixed
            batch, own = {**batch, m: inputs}, w * own + (1 - w) * own[perm.to(pos.device)]
        rows = distributed.gather(own)  # every rank gathers, mixed or not: ranks decide to mix on their own
        return batch, rows if m == first else rows.t()
    return batch, pos
