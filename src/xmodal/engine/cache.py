"""Feature cache for frozen towers: encode each input once, not every epoch.

A locked tower (or the locked trunk of a tower) is a pure function of its input, so its output can
be computed once and looked up by a key (a file path, a caption). Training on cached features is
what makes frozen-backbone strategies cheap.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

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


