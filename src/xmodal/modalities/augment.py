"""Train-time augmentation of a modality: the ``AUGMENTERS`` registry, keyed by modality name.

An augmenter turns a file into a fresh random training view of it each time (a crop, masks, noise),
from a decoded form it keeps in a :class:`xmodal.engine.cache.DiskCache` so that epochs after the
first do not decode the file again, and may mix the samples of a batch (mixup). Evaluation never
goes through it: test-time inputs are the modality's ``load``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from xmodal.engine.cache import DiskCache
from xmodal.registry import Registry


@runtime_checkable
class Augmenter(Protocol):
    """Random training views of one modality's files."""

    config_cls: type  # its settings dataclass (one comment per field)

    def view(self, path: Path, spec: Any, cfg: Any, cache: DiskCache | None) -> Any:
        """A random training sample of the file ``path``, shaped like the modality's ``load(path, spec)``."""
        ...

    def plain(self, path: Path, spec: Any, cfg: Any, cache: DiskCache | None) -> Any:
        """The file as ``load(path, spec)`` gives it (no randomness), read from the decoded form in ``cache``."""
        ...

    def mix(self, inputs: dict[str, torch.Tensor], cfg: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, float] | None:
        """``(mixed inputs, permutation, weight)``: sample i mixed with sample ``permutation[i]``, weighing
        ``weight`` and ``1 - weight``; None when this batch is not mixed."""
        ...


AUGMENTERS: Registry[Augmenter] = Registry("augmenter")
