"""Zero-shot classification: class names x prompt templates -> a classifier in the shared space.

As in CLIP (Radford et al., 2021): each class is the normalised mean embedding of its name written
into several prompt templates; an input is assigned the class with the highest cosine similarity.
Videos are classified from their frame-averaged embedding. Without templates, a modality's own
prompt set (``tasks/prompts.py``: "the sound of {}", ... for audio) is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from xmodal.engine.cache import to_device
from xmodal.engine.precision import resolve_precision
from xmodal.errors import ConfigError, DataError
from xmodal.eval.metrics import confusion_matrix, per_class_accuracy, topk_accuracy
from xmodal.tasks.embed import embed
from xmodal.tasks.prompts import PHOTO_TEMPLATES, prompts_for

DEFAULT_TEMPLATES: tuple[str, ...] = PHOTO_TEMPLATES  # CLIP-style photo prompts (``PROMPTS`` "image")


@torch.no_grad()
def build_zero_shot_classifier(
    model: Any, classnames: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES, batch_size: int = 256,
    precision: str = "fp32",
) -> torch.Tensor:
    """``[C, D]`` class embeddings: the normalised mean of each name in every template, encoded at
    ``precision`` (auto|fp32|bf16|fp16, ``engine/precision.py``; the result is fp32)."""
    if not classnames:
        raise ConfigError("zero-shot needs at least one class name")
    if not templates:
        raise ConfigError("zero-shot needs at least one prompt template")
    for t in templates:
        if "{}" not in t:
            raise ConfigError(f"prompt template {t!r} has no '{{}}' for the class name")
    texts = [t.format(c) for c in classnames for t in templates]
    spec = model.spec("text")
    device = next(model.parameters()).device
    from xmodal.modalities import MODALITIES

    text = MODALITIES.get("text")
    prec = resolve_precision(precision, device)
    model.eval()
    out = []
    with torch.no_grad(), prec.inference_weights(model), prec.autocast():
        for start in range(0, len(texts), batch_size):
            batch = text.collate([text.load(s, spec) for s in texts[start : start + batch_size]], spec)
            out.append(model.encode("text", to_device(batch, device)).float().cpu())
    emb = torch.cat(out).view(len(classnames), len(templates), -1).mean(1)
    return nn.functional.normalize(emb, dim=-1)


@dataclass
class ZeroShotResult:
    classnames: list[str]  # the classes scored, in classifier order
    top1: float  # fraction correct, over all scored items
    top5: float
    per_class: dict[str, float]  # recall per class (NaN where a class has no items)
    confusion: np.ndarray  # [C, C] counts, row = true, column = predicted
    predictions: list[str]  # predicted class per scored item
    targets: list[str]  # true class per scored item
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable files and why

    @property
    def mean_class_accuracy(self) -> float:
        return float(np.nanmean(list(self.per_class.values()))) if self.per_class else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": len(self.targets),
            "top1": self.top1,
            "top5": self.top5,
            "mean_class_accuracy": self.mean_class_accuracy,
            "per_class": {k: (None if np.isnan(v) else v) for k, v in self.per_class.items()},
            "skipped": [{"file": f, "problem": p} for f, p in self.skipped],
        }


def score(embeddings: torch.Tensor, classifier: torch.Tensor, targets: Sequence[str], classnames: Sequence[str]) -> ZeroShotResult:
    """Score ``[N, D]`` embeddings against a ``[C, D]`` classifier; ``targets`` are class names."""
    index = {c: k for k, c in enumerate(classnames)}
    y = torch.tensor([index[t] for t in targets], dtype=torch.long)
    logits = embeddings @ classifier.t()
    preds = logits.argmax(1)
    cm = confusion_matrix(preds, y, len(classnames))
    return ZeroShotResult(
        classnames=list(classnames),
        top1=topk_accuracy(logits, y, 1),
        top5=topk_accuracy(logits, y, 5),
        per_class=dict(zip(classnames, per_class_accuracy(cm).tolist())),
        confusion=cm,
        predictions=[classnames[int(p)] for p in preds],
        targets=list(targets),
    )


def zeroshot(
    model: Any,
    items: Sequence[str | Path],
    labels: Sequence[str],
    classnames: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    modality: str = "image",
    root: str | Path | None = None,
    on_error: str = "raise",
    batch_size: int = 64,
    progress: bool = True,
    classifier: torch.Tensor | None = None,
    precision: str = "fp32",
) -> ZeroShotResult:
    """Zero-shot classify image or video files ``items`` whose true classes are ``labels``.

    ``classnames`` defaults to the sorted set of ``labels``; a label outside ``classnames`` is an
    error naming the item. ``templates`` default to ``modality``'s prompt set (:func:`prompts_for`). Unreadable files raise, or with ``on_error="skip"`` are counted and listed.
    ``precision`` (auto|fp32|bf16|fp16) is that of the forward passes, items and class prompts alike."""
    if len(items) != len(labels):
        raise ConfigError(f"{len(items)} items but {len(labels)} labels")
    for item, label in zip(items, labels):
        if not isinstance(label, str) or not label.strip():
            raise DataError(str(item), f"no class label (got {label!r})")
    classnames = list(classnames) if classnames is not None else sorted(set(labels))
    known = set(classnames)
    for item, label in zip(items, labels):
        if label not in known:
            raise DataError(str(item), f"unknown class name {label!r}; classes are {classnames[:10]}{'...' if len(classnames) > 10 else ''}")
    if classifier is None:
        classifier = build_zero_shot_classifier(model, classnames, prompts_for(modality) if templates is None else templates,
                                                precision=precision)
    emb = embed(model, modality, list(items), root=root, batch_size=batch_size, on_error=on_error, progress=progress,
                precision=precision)
    result = score(emb.vectors, classifier, [labels[i] for i in emb.kept], classnames)
    result.skipped = emb.skipped
    return result
