"""Micro-batching of text queries: concurrent requests share one forward pass of the text tower.

A request puts its text on a queue and waits. One worker thread takes the first waiting text and keeps
collecting while more arrive less than ``wait_ms`` apart (for at most ten times ``wait_ms`` in all, or
until ``max_batch`` texts), embeds them all in one call and hands each request its vector. A lone
query waits ``wait_ms``; a burst is gathered into one batch rather than cut after its first few.
While a batch runs, new queries queue up and form the next batch, so under load the tower runs on
full batches instead of one query at a time behind a lock. A batch that fails is
retried one text at a time, so a bad query gets its own error and does not fail its neighbours.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable, Sequence

import numpy as np

EmbedTexts = Callable[[Sequence[str]], np.ndarray]  # texts -> [N, D] vectors


class TextBatcher:
    """``batcher(text) -> [D] vector``, thread-safe; texts of concurrent callers are embedded together."""

    def __init__(self, embed_texts: EmbedTexts, wait_ms: float = 20.0, max_batch: int = 64) -> None:
        self.embed_texts = embed_texts
        self.wait = wait_ms / 1000.0
        self.max_batch = max(1, max_batch)
        self._queue: queue.Queue = queue.Queue()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches: list[int] = []  # size of each batch run (the last 1000), for tests and benches

    def __call__(self, text: str) -> np.ndarray:
        return self.submit(text).result()

    def submit(self, text: str) -> Future:
        """A future of the ``[D]`` vector of ``text`` (for callers that await rather than block)."""
        self._ensure_worker()
        future: Future = Future()
        self._queue.put((text, future))
        return future

    def close(self) -> None:
        """Stop the worker thread (queued queries are still answered first)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    def _ensure_worker(self) -> None:
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="xmodal-text-batcher", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            self._run(batch)
            self.batches = (self.batches + [len(batch)])[-1000:]
            if stop:
                return

    def _collect(self, first: tuple) -> tuple[list[tuple], bool]:
        """The first item plus what follows it less than ``wait`` apart (at most 10 waits), up to max_batch."""
        batch, cap = [first], time.monotonic() + 10 * self.wait
        while len(batch) < self.max_batch:
            timeout = min(self.wait, cap - time.monotonic())
            try:
                item = self._queue.get(timeout=max(0.0, timeout)) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self, batch: list[tuple]) -> None:
        try:
            vectors = self.embed_texts([text for text, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request(s)
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
            else:
                for item in batch:
                    self._run([item])
            return
        for (_, future), vec in zip(batch, vectors):
            future.set_result(vec)
