"""Text queries of concurrent callers share one embedding call; a bad query fails alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from xmodal.errors import DataError
from xmodal.serve.batch import TextBatcher


class SlowEmbedder:
    """Vectors [len(text), 0] per text; the first call blocks until released; 'bad' texts raise."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = threading.Event()

    def __call__(self, texts):
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.release.wait(10)
        if any(t.startswith("bad") for t in texts):
            raise DataError("query", f"cannot embed {texts}")
        return np.array([[len(t), 0.0] for t in texts], dtype=np.float32)


def test_queries_waiting_behind_a_batch_share_the_next_one():
    fn = SlowEmbedder()
    batcher = TextBatcher(fn, wait_ms=1.0, max_batch=64)
    texts = ["first"] + ["x" * n for n in range(1, 21)]
    with ThreadPoolExecutor(21) as pool:
        first = pool.submit(batcher, texts[0])
        while not fn.calls:
            time.sleep(0.005)
        rest = [pool.submit(batcher, t) for t in texts[1:]]
        while batcher._queue.qsize() < 20:
            time.sleep(0.005)
        fn.release.set()
        out = [first.result(10)] + [f.result(10) for f in rest]
    assert [int(v[0]) for v in out] == [len(t) for t in texts]  # each caller gets its own vector
    assert [len(c) for c in fn.calls] == [1, 20] and batcher.batches == [1, 20]
    batcher.close()


def test_a_bad_query_fails_alone_and_max_batch_is_kept():
    fn = SlowEmbedder()
    fn.release.set()
    batcher = TextBatcher(fn, wait_ms=50.0, max_batch=4)
    with ThreadPoolExecutor(10) as pool:
        futures = {t: pool.submit(batcher, t) for t in ["ok1", "bad", "ok22", "ok333", "ok4444", "ok5", "ok6"]}
        with pytest.raises(DataError, match="bad"):
            futures["bad"].result(10)
        assert int(futures["ok4444"].result(10)[0]) == 6
        assert all(int(futures[t].result(10)[0]) == len(t) for t in futures if t != "bad")
    assert max(len(c) for c in fn.calls) <= 4
    batcher.close()
