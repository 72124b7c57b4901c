"""Embed many files (or strings) of one modality with a model's matching tower."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from xmodal.engine.progress import progress as progress_bar

from xmodal.engine.cache import to_device
from xmodal.engine.precision import resolve_precision
from xmodal.engine.prefetch import pooled_batches, prefetched
from xmodal.errors import ConfigError, DataError
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


class _Encoded(Dataset):
    """Item ``k``: batch ``k`` of ``data`` decoded and embedded where it is loaded (a worker process of a
    DataLoader, which runs torch on one thread): ``(kept indices, vectors, errors)``."""

    def __init__(self, data: _Items, model: Any, batch_size: int, prec: Any) -> None:
        self.data, self.model, self.batch_size, self.prec = data, model, batch_size, prec

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __getitem__(self, k: int) -> tuple[list[int], torch.Tensor | None, list[DataError]]:
        chunk = [self.data[i] for i in range(k * self.batch_size, min(len(self.data), (k + 1) * self.batch_size))]
        with torch.no_grad():
            return _encode(self.model, self.data, chunk, self.prec)


def _encode(model: Any, data: _Items, chunk: list[tuple[int, Any, DataError | None]], prec: Any
            ) -> tuple[list[int], torch.Tensor | None, list[DataError]]:
    """The decoded ``chunk``'s kept indices, their embeddings (None if none was readable) and its errors."""
    good = [(i, sample) for i, sample, error in chunk if error is None]
    errors = [error for _, _, error in chunk if error is not None]
    if not good:
        return [], None, errors
    device = next(model.parameters()).device
    batch = to_device(data.modality.collate([s for _, s in good], data.spec), device)
    with prec.autocast():
        out = model.encode(data.modality.name, batch).float()
    out = out if prec.name == "fp32" else torch.nn.functional.normalize(out, dim=-1)
    return [i for i, _ in good], out.cpu(), errors


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
    replicas: int = 1,
) -> Embedded:
    """Embed ``items`` (file paths, relative to ``root``; strings for text) of ``modality``.

    ``on_error="raise"`` stops at the first bad file with a DataError naming it; ``"skip"`` counts and
    lists bad files in ``Embedded.skipped``. ``precision``: auto|fp32|bf16|fp16 (``engine/precision.py``;
    below fp32 the model is held in the low dtype for the loop); vectors come back fp32. ``num_workers``
    processes decode ahead (``prefetch`` > 0 batches each); with none, ``decode_threads`` threads (0: torch's
    thread count) decode each batch in turn with the model, or with ``prefetch > 0`` one thread reads ahead.
    ``replicas`` > 1 (CPU only): that many worker processes, each on one thread with the model shared
    copy-on-write, decode and embed whole batches side by side (multi-instance inference, instead of
    every core working on each batch in turn; ``num_workers`` is then unused)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error {on_error!r} is not 'raise' or 'skip'")
    spec = model.spec(modality)
    data = _Items(items, modality, spec, Path(root) if root is not None else None)
    device = next(model.parameters()).device
    prec = resolve_precision(precision, device)
    _check_replicas(replicas, device)
    vectors, kept, skipped = [], [], []
    model.eval()
    with torch.no_grad(), prec.inference_weights(model):
        results = _results(model, data, prec, batch_size, num_workers, prefetch, decode_threads, replicas)
        for ids, out, errors in progress_bar(results, progress, desc=f"embedding {modality}", leave=False,
                                             total=-(-len(data) // batch_size)):
            if errors and on_error == "raise":
                raise errors[0]
            skipped.extend((error.source, error.problem) for error in errors)
            if out is not None:
                vectors.append(out)
                kept.extend(ids)
    dim = model.embed_dim
    return Embedded(torch.cat(vectors) if vectors else torch.empty(0, dim), kept, skipped)


def _check_replicas(replicas: int, device: torch.device) -> None:
    if replicas < 1:
        raise ConfigError(f"replicas must be at least 1, got {replicas}")
    if replicas > 1 and device.type != "cpu":
        raise ConfigError(f"replicas {replicas}: worker processes embed on the CPU only (this model is on {device})")


def _results(model: Any, data: _Items, prec: Any, batch_size: int, num_workers: int, prefetch: int,
             decode_threads: int, replicas: int) -> Iterator[tuple[list[int], torch.Tensor | None, list[DataError]]]:
    """Every batch's ``(kept indices, vectors, errors)``, in order: from replica processes, or decoded here
    (see :func:`_batches`) and embedded by this process."""
    if replicas > 1:
        loader = DataLoader(_Encoded(data, model, batch_size, prec), batch_size=None, num_workers=replicas)
        yield from loader
        return
    for chunk in _batches(data, batch_size, num_workers, prefetch, decode_threads):
        yield _encode(model, data, chunk, prec)


def _batches(data: _Items, batch_size: int, num_workers: int, prefetch: int, decode_threads: int) -> Any:
    """The decoded batches of ``data``: from the worker processes' loader, a reading-ahead thread, or a
    pool of threads decoding each batch in turn with the model (see :func:`embed`)."""
    if num_workers == 0 and prefetch == 0:
        return pooled_batches(data.__getitem__, len(data), batch_size, decode_threads or torch.get_num_threads())
    ahead = {"prefetch_factor": prefetch} if num_workers > 0 and prefetch > 0 else {}  # else torch's default
    loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers, collate_fn=list, **ahead)
    return loader if num_workers > 0 else prefetched(loader, prefetch)
