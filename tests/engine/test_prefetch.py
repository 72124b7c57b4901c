"""prefetched: a reading-ahead thread that keeps order, hands errors over and stops when the consumer does."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from xmodal.engine.prefetch import prefetched
from xmodal.tasks.embed import embed


def test_items_come_in_order_and_are_produced_ahead() -> None:
    produced: list[int] = []

    def source():
        for i in range(6):
            produced.append(i)
            yield i

    out = []
    for item in prefetched(source(), depth=2):
        time.sleep(0.02)  # the consumer is slow: the producer runs ahead meanwhile
        out.append((item, len(produced)))
    assert [i for i, _ in out] == list(range(6))
    assert out[0][1] >= 2  # while item 0 was used, later ones were already produced


def test_an_error_is_raised_at_its_item() -> None:
    def source():
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetched(source()):
            got.append(item)
    assert got == [1]


def test_stopping_early_ends_the_thread() -> None:
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    gen = prefetched(endless(), depth=1)
    assert next(gen) == 0
    gen.close()
    assert threading.active_count() == before
    with pytest.raises(ValueError, match="at least 1"):
        next(prefetched([], depth=0))


def test_embed_with_and_without_the_reading_thread_agree(tiny_lit, colour_manifest) -> None:
    import csv

    paths = [r["path"] for r in csv.DictReader(colour_manifest.open())]
    kw = {"root": colour_manifest.parent, "batch_size": 5, "progress": False}
    ahead = embed(tiny_lit, "image", paths, prefetch=2, **kw)
    inline = embed(tiny_lit, "image", paths, prefetch=0, decode_threads=1, **kw)
    pooled = embed(tiny_lit, "image", paths, prefetch=0, decode_threads=3, **kw)
    assert ahead.kept == inline.kept == pooled.kept == list(range(len(paths)))
    assert torch.equal(ahead.vectors, inline.vectors) and torch.equal(pooled.vectors, inline.vectors)


def test_pooled_batches_keep_order_and_batch_sizes():
    from xmodal.engine.prefetch import pooled_batches

    for threads in (1, 3):
        batches = list(pooled_batches(lambda i: i * i, 10, 4, threads))
        assert batches == [[0, 1, 4, 9], [16, 25, 36, 49], [64, 81]]


def test_pooled_batches_raise_the_loaders_error():
    from xmodal.engine.prefetch import pooled_batches

    def load(i: int) -> int:
        if i == 5:
            raise OSError("bad file 5")
        return i

    gen = pooled_batches(load, 8, 4, 2)
    assert next(gen) == [0, 1, 2, 3]
    with pytest.raises(OSError, match="bad file 5"):
        next(gen)
