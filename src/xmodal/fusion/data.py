"""Fusion data: manifest rows decoded once into memory, and loaders over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from xmodal.data.manifest import MediaDataset
from xmodal.errors import DataError
from xmodal.fusion.model import FusionClassifier


class _InMemory(Dataset):
    def __init__(self, samples: list[Any]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Any:
        return self.samples[i]


def load_samples(rows: Sequence[dict[str, Any]], model: FusionClassifier, columns: dict[str, str],
                 label_column: str, root: str | Path | None, on_error: str) -> tuple[MediaDataset, list[Any]]:
    """Decode ``rows`` once: ``(dataset, samples)`` (bad rows skipped or raised; absent inputs allowed)."""
    if rows and label_column not in rows[0]:
        raise DataError("manifest", f"no label column {label_column!r}; columns are {list(rows[0])}")
    for col in columns.values():
        if rows and col not in rows[0]:
            raise DataError("manifest", f"no column {col!r}; columns are {list(rows[0])}")
    data = MediaDataset(list(rows), columns, model.specs, root=root, label_column=label_column,
                        on_error=on_error, optional=list(columns))
    samples = [s for s in (data[i] for i in range(len(data))) if s is not None]
    return data, samples


def make_loader(data: MediaDataset, samples: list[Any], batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(_InMemory(samples), batch_size=batch_size, shuffle=shuffle, collate_fn=data.collate_fn,
                      generator=gen, drop_last=shuffle and len(samples) > batch_size)
