"""Efficiency accounting for a transfer run: parameters, peak memory, throughput, FLOPs per clip.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one clip (matrix multiplies and
convolutions; a multiply-add counts as 2 FLOPs). Peak memory is ``torch.cuda.max_memory_allocated``
on a GPU; on a CPU it is the peak resident set size above the level at the start, sampled every 20 ms.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import torch
from torch import nn


def parameter_counts(clf: Any) -> dict[str, int]:
    """``trainable``: parameters that train; ``total``: parameters a video prediction runs through."""
    trainable = {id(p): p.numel() for p in clf.parameters() if p.requires_grad}
    used: dict[int, int] = {}
    for module in clf.inference_modules():
        used.update({id(p): p.numel() for p in module.parameters()})
    used.update(trainable)
    return {"trainable": sum(trainable.values()), "total": sum(used.values())}


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            import os

            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """``with PeakMemory(device) as pm: ...`` then ``pm.peak_mb`` (MiB above the starting level)."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.02) -> None:
        self.device, self.interval = torch.device(device), interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _watch(self) -> None:
        peak = self._start
        while not self._stop.wait(self.interval):
            peak = max(peak, _rss_bytes())
        self._peak = max(peak, _rss_bytes())

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        self._start = _rss_bytes()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._start) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(0.0, (self._peak - self._start) / 2**20)


@torch.no_grad()
def flops_per_clip(model: nn.Module, clip: torch.Tensor) -> int:
    """FLOPs of ``model(clip[None])`` for one clip ``[T, 3, H, W]``."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:  # the counter's module tracker trips over views of trainable leaves under no_grad
        p.requires_grad_(False)
    try:
        with FlopCounterMode(display=False) as counter:
            model(clip[None])
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return int(counter.get_total_flops())


@torch.no_grad()
def throughput(model: nn.Module, pixels: torch.Tensor, batch_size: int = 32) -> float:
    """Clips per second of inference over ``pixels [N, T, 3, H, W]`` (decoded clips, backbone included)."""
    model.eval()
    device = next(model.parameters()).device
    model(pixels[:1].to(device))  # warm-up
    start = time.perf_counter()
    for i in range(0, len(pixels), batch_size):
        model(pixels[i : i + batch_size].to(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return len(pixels) / max(time.perf_counter() - start, 1e-9)
