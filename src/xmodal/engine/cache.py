"""Feature cache for frozen towers: encode each input once, not every epoch.

A locked tower (or the locked trunk of a tower) is a pure function of its input, so its output can
be computed once and looked up by a key (a file path, a caption). Training on cached features is
what makes frozen-backbone strategies cheap. :class:`DiskCache` keeps decoded inputs (an audio
clip's log-mel) on disk, so that augmenting them afresh every epoch does not decode them again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import torch

from xmodal.engine.progress import progress as progress_bar
from xmodal.errors import DataError


class FeatureCache:
    """``key -> feature`` for a frozen function ``fn(collated_batch) -> Tensor[B, ...]``.

    ``load(item)`` turns an item (a path or a string) into one sample and ``collate`` stacks samples
    into the batch ``fn`` takes. Features are kept on the CPU."""

    def __init__(
        self,
        fn: Callable[[Any], torch.Tensor],
        load: Callable[[Any], Any],
        collate: Callable[[list[Any]], Any],
        batch_size: int = 256,
        device: torch.device | str = "cpu",
    ) -> None:
        self.fn, self.load, self.collate = fn, load, collate
        self.batch_size = batch_size
        self.device = torch.device(device)
        self._store: dict[Hashable, torch.Tensor] = {}
        self.computed = 0  # how many inputs went through fn (for tests and logs)
        self.skipped: dict[Hashable, tuple[str, str]] = {}  # key -> (file, problem) of unreadable inputs (skip_errors)

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._store

    @torch.no_grad()
    def fill(self, items: Sequence[Any], keys: Sequence[Hashable] | None = None, desc: str = "caching",
             progress: bool = True, skip_errors: bool = False) -> None:
        """Compute features of the ``items`` whose keys are not cached yet. With ``skip_errors``, an
        input whose ``load`` raises a DataError is recorded in ``skipped`` (and not retried) instead."""
        keys = list(items) if keys is None else list(keys)
        todo = [(k, it) for k, it in dict(zip(keys, items)).items() if k not in self._store and k not in self.skipped]
        for start in progress_bar(range(0, len(todo), self.batch_size), progress and len(todo) > self.batch_size, desc=desc, leave=False):
            loaded = [(key, sample) for key, sample in ((k, self._load(k, it, skip_errors)) for k, it in todo[start : start + self.batch_size])
                      if key not in self.skipped]
            if not loaded:
                continue
            feats = self.fn(to_device(self.collate([s for _, s in loaded]), self.device)).float().cpu()
            for (key, _), feat in zip(loaded, feats):
                self._store[key] = feat
            self.computed += len(loaded)

    def _load(self, key: Hashable, item: Any, skip_errors: bool) -> Any:
        """``load(item)``; with ``skip_errors`` a DataError is recorded under ``key`` and None returned."""
        try:
            return self.load(item)
        except DataError as exc:
            if not skip_errors:
                raise
            self.skipped[key] = (exc.source, exc.problem)
            return None

    def get(self, keys: Sequence[Hashable], items: Sequence[Any] | None = None) -> torch.Tensor:
        """Stacked features of ``keys``; missing ones are computed from ``items`` (or the keys)."""
        missing = [k for k in keys if k not in self._store]
        if missing:
            lookup = dict(zip(keys, items)) if items is not None else {k: k for k in keys}
            self.fill([lookup[k] for k in missing], missing)
        return torch.stack([self._store[k] for k in keys])


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors of a (nested) batch dict to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch




class DiskCache:
    """``key -> tensor`` kept as ``.npy`` files in ``folder``, for inputs too slow to decode every epoch.

    ``get(key, compute)`` returns the stored tensor, or computes, stores and returns it. Files are
    written under a temporary name and renamed, so DataLoader workers may share a folder; a stored file
    that cannot be read is computed again. Each process also keeps the tensors it has seen in memory,
    up to ``memory_bytes`` in all, so that later epochs read no file either."""

    def __init__(self, folder: str | Path, memory_bytes: int = 1 << 30) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.computed = 0  # how many tensors this process computed (not read back)
        self.memory_bytes = memory_bytes  # budget of the in-memory copies
        self._memory: dict[str, torch.Tensor] = {}
        self._held = 0  # bytes held in memory

    def path(self, key: str) -> Path:
        return self.folder / (hashlib.sha1(key.encode("utf-8")).hexdigest() + ".npy")

    def get(self, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key in self._memory:
            return self._memory[key]
        value = self._read(key)
        if value is None:
            value = compute().detach().cpu()
            file = self.path(key)
            tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, value.numpy(), allow_pickle=False)
            tmp.replace(file)
            self.computed += 1
        size = value.numel() * value.element_size()
        if self._held + size <= self.memory_bytes:
            self._memory[key] = value
            self._held += size
        return value

    def _read(self, key: str) -> torch.Tensor | None:
        """The stored tensor of ``key``; None when there is none, or its file is torn or foreign."""
        file = self.path(key)
        if not file.is_file():
            return None
        try:
            return torch.from_numpy(np.load(file, allow_pickle=False))
        except (OSError, ValueError):
            return None
