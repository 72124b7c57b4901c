"""Class-balanced batches: every batch holds the classes as evenly as its size allows.

Contrastive training with class-aware positives learns from the classes a batch holds: a batch
without some class has no negative of it, and a batch dominated by one class has few negatives at
all. :class:`BalancedBatches` is a ``batch_sampler`` that shuffles each class's rows, repeats the rows
of the smaller classes until every class has as many as the largest, and deals them out round-robin
(a fresh order of classes each round), so consecutive rows, hence batches, cycle through the classes.
"""

from __future__ import annotations

from typing import Hashable, Iterator, Sequence

import torch
from torch.utils.data import Sampler


class BalancedBatches(Sampler[list[int]]):
    """Batches of row indices, balanced over ``groups`` (one class per row); an epoch holds every row
    at least once and ``classes x largest class`` rows in all, in as few batches of at most
    ``batch_size`` rows as hold them, of sizes differing by one at most (no row is dropped, and no batch
    is a small remainder: 240 rows in batches of 128 are two batches of 120)."""

    def __init__(self, groups: Sequence[Hashable], batch_size: int, generator: torch.Generator | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        by_class: dict[Hashable, list[int]] = {}
        for i, g in enumerate(groups):
            by_class.setdefault(g, []).append(i)
        self.classes = list(by_class.values())
        self.batch_size, self.generator = batch_size, generator
        self.total = len(self.classes) * max((len(c) for c in self.classes), default=0)

    def __len__(self) -> int:
        return -(-self.total // self.batch_size)

    def _order(self) -> list[int]:
        """One epoch's rows: each class shuffled and cycled to the largest class's size, dealt round-robin."""
        largest = self.total // max(1, len(self.classes))
        columns = []
        for rows in self.classes:
            perm = torch.randperm(len(rows), generator=self.generator).tolist()
            columns.append([rows[perm[k % len(rows)]] for k in range(largest)])
        order = []
        for k in range(largest):
            for c in torch.randperm(len(columns), generator=self.generator).tolist():
                order.append(columns[c][k])
        return order

    def __iter__(self) -> Iterator[list[int]]:
        order, n = self._order(), len(self)
        for b in range(n):
            yield order[b * self.total // n:(b + 1) * self.total // n]
