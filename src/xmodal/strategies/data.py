"""Decoded clips of one split for a transfer run, with the task's per-row targets.

Rows of a manifest can share a clip (several captions, moments or questions per video): every clip
is decoded once (``pixels``: its sampled, preprocessed frames, kept in memory) and each row points to
its clip (``clip``). An unreadable clip raises, or with ``on_error="skip"`` drops its rows (counted
and listed in ``skipped``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from xmodal.data.manifest import MediaDataset
from xmodal.errors import DataError


@dataclass
class ClipSet:
    pixels: torch.Tensor  # [U, T, 3, H, W] preprocessed frames of each distinct clip
    clip: torch.Tensor  # [N] long: the clip of each row
    targets: dict[str, Any]  # the task's per-row targets (tensors [N, ...] or lists of N items)
    paths: list[str]  # file of each distinct clip
    rows: list[dict[str, Any]]  # the rows kept
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable files and why
    root: Path | None = None  # folder the paths are relative to (None: the working directory)
    spec: Any = None  # how the frames were sampled and preprocessed (a VideoSpec; part of the feature keys)

    def __len__(self) -> int:
        return len(self.clip)


def decode_clips(paths: Sequence[str], spec: Any, root: Path | None, on_error: str, num_workers: int,
                 desc: str) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """``(pixels [K, T, 3, H, W], kept indices into paths, skipped)`` of the distinct ``paths``."""
    data = MediaDataset([{"path": p} for p in paths], {"video": "path"}, {"video": spec}, root=root,
                        label_column=None, on_error=on_error, manifest=desc)
    loader = DataLoader(data, batch_size=16, num_workers=num_workers, collate_fn=data.collate_fn)
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
    return torch.cat(pixels), kept, skipped


def load_split(rows: Sequence[dict[str, Any]], task: Any, task_cfg: Any, meta: dict[str, Any], spec: Any,
               root: Path | None, path_column: str, on_error: str = "raise", num_workers: int = 0,
               desc: str = "clips") -> ClipSet:
    """Decode the clips of ``rows`` (``spec``: how frames are sampled) and build the task's targets."""
    if not rows:
        raise DataError(desc, "no rows")
    if path_column not in rows[0]:
        raise DataError(desc, f"no column {path_column!r}; columns are {sorted(rows[0])}")
    paths = list(dict.fromkeys(str(r[path_column]) for r in rows))
    pixels, kept, skipped = decode_clips(paths, spec, root, on_error, num_workers, desc)
    where = {paths[k]: i for i, k in enumerate(kept)}
    rows = [r for r in rows if str(r[path_column]) in where]
    clip = torch.tensor([where[str(r[path_column])] for r in rows], dtype=torch.long)
    targets = task.targets(rows, meta, task_cfg, desc)
    return ClipSet(pixels, clip, targets, [paths[k] for k in kept], list(rows), skipped, root, spec)


class GroupedBatches:
    """Shuffled batches of row indices, each from one group (``groups [N]``): rows are shuffled within
    their group, cut into batches of ``batch_size`` and the batches of all groups shuffled together,
    anew every epoch from ``generator`` (a multi-task run: each step one task)."""

    def __init__(self, groups: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.members = [(groups == g).nonzero()[:, 0] for g in groups.unique().tolist()]
        self.batch_size, self.generator = batch_size, generator

    def __len__(self) -> int:
        return sum(-(-len(m) // self.batch_size) for m in self.members)

    def __iter__(self):
        batches = []
        for m in self.members:
            shuffled = m[torch.randperm(len(m), generator=self.generator)]
            batches.extend(shuffled.split(self.batch_size))
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]
