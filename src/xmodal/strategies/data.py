"""Decoded clips of one split for a transfer run, with the task's per-row targets.

Rows of a manifest can share a clip (several captions, moments or questions per video): every clip
is decoded once (``pixels``: its sampled, preprocessed frames, kept in memory) and each row points to
its clip (``clip``). An unreadable clip raises, or with ``on_error="skip"`` drops its rows (counted
and listed in ``skipped``). A frozen strategy with a feature store never holds the pixels: its split
is loaded by ``strategies/features.py`` (``pixels`` None, ``stored`` its features on disk), which decodes
only the clips missing from the store, a chunk at a time (:func:`decode_chunks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from xmodal.data.manifest import MediaDataset
from xmodal.errors import DataError


@dataclass
class Loading:
    root: Path | None  # folder the manifest's paths are relative to (None: the working directory)
    path_column: str  # manifest column with the video files
    on_error: str  # unreadable clip: "raise" or "skip"
    num_workers: int  # DataLoader worker processes for decoding
    chunk: int  # clips decoded (and held as pixels) at a time
    desc: str  # the split, for messages ("train rows")


@dataclass
class Stored:
    inputs: dict[str, Any]  # a frozen strategy's cache per distinct clip: field -> StoredRows (memory-mapped)
    encoded: int  # clips decoded and encoded into the store while loading (0: every clip was stored)
    seconds: float  # time spent hashing the files, reading the index and encoding the missing clips


@dataclass
class ClipSet:
    pixels: torch.Tensor | None  # [U, T, 3, H, W] preprocessed frames of each distinct clip; None when never
    # decoded into memory (a frozen strategy's split read from the feature store: see ``stored``)
    clip: torch.Tensor  # [N] long: the clip of each row
    targets: dict[str, Any]  # the task's per-row targets (tensors [N, ...] or lists of N items)
    paths: list[str]  # file of each distinct clip
    rows: list[dict[str, Any]]  # the rows kept
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable files and why
    root: Path | None = None  # folder the paths are relative to (None: the working directory)
    spec: Any = None  # how the frames were sampled and preprocessed (a VideoSpec; part of the feature keys)
    stored: Stored | None = None  # the clips' features in the feature store (set when ``pixels`` is None)

    def __len__(self) -> int:
        return len(self.clip)


def decode_chunks(paths: Sequence[str], spec: Any, root: Path | None, on_error: str, num_workers: int,
                  desc: str, chunk: int, skipped: list[tuple[str, str]]) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """``(pixels [<=chunk, T, 3, H, W], their indices into paths)`` of the distinct ``paths``, decoded
    ``chunk`` clips at a time (only one chunk's pixels exist at once unless the caller keeps them);
    unreadable files (``on_error="skip"``) are appended to ``skipped``. Draws nothing from torch's global
    random generator (decoding is deterministic)."""
    data = MediaDataset([{"path": p} for p in paths], {"video": "path"}, {"video": spec}, root=root,
                        label_column=None, on_error=on_error, manifest=desc)
    loader = DataLoader(data, batch_size=chunk, num_workers=num_workers, collate_fn=data.collate_fn,
                        generator=torch.Generator())
    for batch in loader:
        if batch is None:
            continue
        skipped.extend(batch["skipped"])
        yield batch["video"]["pixel_values"], [int(i) for i in batch["index"]]
    skipped[:] = list(dict.fromkeys([*skipped, *data.skipped]))


def decode_clips(paths: Sequence[str], spec: Any, root: Path | None, on_error: str, num_workers: int,
                 desc: str) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """``(pixels [K, T, 3, H, W], kept indices into paths, skipped)`` of the distinct ``paths``."""
    pixels, kept, skipped = [], [], []
    for chunk, index in decode_chunks(paths, spec, root, on_error, num_workers, desc, 16, skipped):
        pixels.append(chunk)
        kept.extend(index)
    if not kept:
        raise DataError(desc, f"every clip was unreadable ({len(skipped)} skipped)")
    return torch.cat(pixels), kept, skipped


def split_paths(rows: Sequence[dict[str, Any]], path_column: str, desc: str) -> list[str]:
    """The distinct files of ``rows`` in order of appearance; a DataError for no rows or no such column."""
    if not rows:
        raise DataError(desc, "no rows")
    if path_column not in rows[0]:
        raise DataError(desc, f"no column {path_column!r}; columns are {sorted(rows[0])}")
    return list(dict.fromkeys(str(r[path_column]) for r in rows))


def kept_rows(rows: Sequence[dict[str, Any]], paths: Sequence[str], kept: Sequence[int], path_column: str
              ) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """The rows whose file is among ``paths[kept]`` and each one's clip (its position in ``kept``)."""
    where = {paths[k]: i for i, k in enumerate(kept)}
    rows = [r for r in rows if str(r[path_column]) in where]
    return rows, torch.tensor([where[str(r[path_column])] for r in rows], dtype=torch.long)


def load_split(rows: Sequence[dict[str, Any]], task: Any, task_cfg: Any, meta: dict[str, Any], spec: Any,
               root: Path | None, path_column: str, on_error: str = "raise", num_workers: int = 0,
               desc: str = "clips") -> ClipSet:
    """Decode the clips of ``rows`` (``spec``: how frames are sampled) and build the task's targets."""
    paths = split_paths(rows, path_column, desc)
    pixels, kept, skipped = decode_clips(paths, spec, root, on_error, num_workers, desc)
    rows, clip = kept_rows(rows, paths, kept, path_column)
    targets = task.targets(rows, meta, task_cfg, desc)
    return ClipSet(pixels, clip, targets, [paths[k] for k in kept], list(rows), skipped, root, spec)


class GroupedBatches:
    """Shuffled batches of row indices, each from one group (``groups [N]``): rows are shuffled within
    their group, cut into batches of ``batch_size`` and the batches of all groups shuffled together,
    anew every epoch from ``generator`` (a multi-task run: each step one task). ``balanced``: every group
    gives the mean number of batches per epoch instead of its own (a small group's rows repeat in a new
    order, a large group's batches are a fresh random subset each epoch); the epoch keeps its length."""

    def __init__(self, groups: torch.Tensor, batch_size: int, generator: torch.Generator, balanced: bool = False) -> None:
        self.members = [(groups == g).nonzero()[:, 0] for g in groups.unique().tolist()]
        self.batch_size, self.generator = batch_size, generator
        self.counts = [-(-len(m) // batch_size) for m in self.members]
        if balanced:
            self.counts = [max(1, round(sum(self.counts) / len(self.counts)))] * len(self.counts)

    def __len__(self) -> int:
        return sum(self.counts)

    def _batches(self, m: torch.Tensor, count: int) -> list[torch.Tensor]:
        """``count`` batches of group ``m``: whole shuffles of it, one after another, as many as needed."""
        out: list[torch.Tensor] = []
        while len(out) < count:
            out.extend(m[torch.randperm(len(m), generator=self.generator)].split(self.batch_size))
        return out[:count]

    def __iter__(self):
        batches = [b for m, count in zip(self.members, self.counts) for b in self._batches(m, count)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]
