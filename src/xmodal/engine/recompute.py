"""Activation checkpointing: recompute a block's activations in the backward pass instead of keeping them.

Training keeps every intermediate activation of the forward pass for the backward pass; for full
fine-tuning of a ViT that is most of the memory. Wrapping each transformer block in
``torch.utils.checkpoint`` (non-reentrant) keeps only the blocks' inputs and runs each block's forward
again during backward: the same gradients for about a third more compute (Chen et al., "Training Deep
Nets with Sublinear Memory Cost", 2016). It works on any module (our ViT blocks, transformers' CLIP
layers) through the tower's ``blocks()``, so no tower needs its own switch.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

_WRAPPED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()  # modules already checkpointed (wrapped once)


def checkpoint_activations(modules: Iterable[nn.Module]) -> int:
    """Make each of ``modules`` recompute its activations in the backward pass when it trains (in
    training mode with gradients on; evaluation and ``no_grad`` run it plainly). Returns how many were
    wrapped now (a module wrapped before is left as it is)."""
    count = 0
    for module in modules:
        if module in _WRAPPED:
            continue
        module.forward = _recomputed(module, module.forward)
        _WRAPPED.add(module)
        count += 1
    return count


def _recomputed(module: nn.Module, forward: Any) -> Any:
    def run(*args: Any, **kwargs: Any) -> Any:
        if module.training and torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return run
