"""Class-balanced batches: every class in every batch, as evenly as the batch size allows."""

from collections import Counter

import torch

from xmodal.data.sampling import BalancedBatches


def test_batches_hold_every_class_evenly_and_cover_every_row():
    groups = ["a"] * 12 + ["b"] * 12 + ["c"] * 12
    sampler = BalancedBatches(groups, batch_size=6, generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6
    for batch in batches:
        assert sorted(Counter(groups[i] for i in batch).values()) == [2, 2, 2]
    assert sorted(i for b in batches for i in b) == list(range(36))


def test_small_classes_are_repeated_up_to_the_largest():
    groups = ["big"] * 9 + ["small"] * 3
    batches = list(BalancedBatches(groups, batch_size=4, generator=torch.Generator().manual_seed(1)))
    counts = Counter(groups[i] for b in batches for i in b)
    assert counts == {"big": 9, "small": 9}
    assert {i for b in batches for i in b} == set(range(12))


def test_no_row_is_dropped_and_batches_are_of_even_sizes():
    assert [len(b) for b in BalancedBatches(["a", "b"] * 120, batch_size=128)] == [120, 120]
    assert [len(b) for b in BalancedBatches(["a", "b"] * 5, batch_size=4)] == [3, 3, 4]
    assert [len(b) for b in BalancedBatches(["a", "b", "a"], batch_size=8)] == [4]
