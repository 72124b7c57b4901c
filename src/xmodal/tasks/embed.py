"""Embed many files (or strings) of one modality with a model's matching tower."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from xmodal.engine.progress import progress as progress_bar

from xmodal.engine.cache import to_device
from xmodal.engine.precision import resolve_precision
from xmodal.engine.prefetch import pooled_batches, prefetched
from xmodal.errors import DataError
from xmodal.modalities import MODALITIES


@dataclass
class Embedded:
    vectors: torch.Tensor  # [N_kept, D] L2-normalised embeddings
    kept: list[int]  # indices of the input items that were embedded
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, problem) of skipped items


class _Items(Dataset):
    def __init__(self, items: Sequence[Any], modality: str, spec: Any, root: Path | None) -> None:
        self.items, self.modality, self.spec, self.root = items, MODALITIES.get(modality), spec, root

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, Any, DataError | None]:
        item = self.items[i]
        if self.modality.is_file:
            item = Path(item) if self.root is None or Path(item).is_absolute() else self.root / item
        try:
            return i, self.modality.load(item, self.spec), None
        except DataError as exc:
            return i, None, exc


def embed(
    model: Any,
    modality: str,
    items: Sequence[Any],
    root: str | Path | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    on_error: str = "raise",
    progress: bool = True,
    precision: str = "fp32",
    prefetch: int = 0,
    decode_threads: int = 0,
) -> Embedded:
    """Embed ``items`` (file paths, relative to ``root``; strings for text) of ``modality``.

    ``on_error="raise"`` stops at the first bad file with a DataError naming it; ``"skip"`` counts and
    lists bad files in ``Embedded.skipped``. ``precision``: auto|fp32|bf16|fp16 (``engine/precision.py``;
    below fp32 the model is held in the low dtype for the loop); vectors come back fp32. ``num_workers``
    processes decode ahead (``prefetch`` > 0 batches each); with none, ``decode_threads`` threads (0: torch's
    thread count) decode each batch in turn with the model, or with ``prefetch > 0`` one thread reads ahead."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error {on_error!r} is not 'raise' or 'skip'")
    spec = model.spec(modality)
    data = _Items(items, modality, spec, Path(root) if root is not None else None)
    ahead = {"prefetch_factor": prefetch} if num_workers > 0 and prefetch > 0 else {}  # else torch's default
    loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers, collate_fn=list, **ahead)
    device = next(model.parameters()).device
    prec = resolve_precision(precision, device)
    vectors, kept, skipped = [], [], []
    model.eval()
    with torch.no_grad(), prec.inference_weights(model):
        batches = _batches(data, loader, batch_size, num_workers, prefetch, decode_threads)
        for chunk in progress_bar(batches, progress, desc=f"embedding {modality}", leave=False, total=len(loader)):
            good = []
            for i, sample, error in chunk:
                if error is None:
                    good.append((i, sample))
                elif on_error == "raise":
                    raise error
                else:
                    skipped.append((error.source, error.problem))
            if good:
                batch = to_device(data.modality.collate([s for _, s in good], spec), device)
                with prec.autocast():
                    out = model.encode(modality, batch).float()
                vectors.append((out if prec.name == "fp32" else torch.nn.functional.normalize(out, dim=-1)).cpu())
                kept.extend(i for i, _ in good)
    dim = model.embed_dim
    return Embedded(torch.cat(vectors) if vectors else torch.empty(0, dim), kept, skipped)


def _batches(data: _Items, loader: DataLoader, batch_size: int, num_workers: int, prefetch: int,
             decode_threads: int) -> Any:
    """The decoded batches of ``data``: from the worker processes' loader, a reading-ahead thread, or a
    pool of threads decoding each batch in turn with the model (see :func:`embed`)."""
    if num_workers > 0:
        return loader
    if prefetch > 0:
        return prefetched(loader, prefetch)
    return pooled_batches(data.__getitem__, len(data), batch_size, decode_threads or torch.get_num_threads())
