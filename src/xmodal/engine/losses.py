"""Contrastive losses over a batch of paired embeddings, with class-aware positives.

- ``clip``: symmetric InfoNCE with a learnable temperature (Radford et al., "Learning Transferable
  Visual Models From Natural Language Supervision", 2021). With ``labels``, every pair that shares a
  label is a positive and the target distribution is uniform over them (as in SupCon, Khosla et al.
  2020), so two captions of the same class are not pushed apart.
- ``siglip``: pairwise sigmoid loss with learnable temperature and bias (Zhai et al., "Sigmoid Loss
  for Language Image Pre-Training", ICCV 2023); with ``labels`` same-label pairs are positives.

A registered loss is a :class:`ContrastiveLoss`: callable like the functions below, and declaring
``uses_bias`` (whether ``logit_bias`` enters it, so alignment trains the bias only when it does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from xmodal.registry import Registry

LossFn = Callable[..., torch.Tensor]


@runtime_checkable
class ContrastiveLoss(Protocol):
    """A registered loss: ``loss(a, b, logit_scale, logit_bias=None, labels=None) -> scalar``."""

    uses_bias: bool  # True: ``logit_bias`` enters the loss (alignment then trains it), else it is ignored

    def __call__(self, a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor,
                 logit_bias: torch.Tensor | None = None,
                 labels: Sequence[str] | torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class Loss:
    """A loss function and what it declares (a ContrastiveLoss)."""

    fn: LossFn  # the function, with the ContrastiveLoss signature
    uses_bias: bool  # whether ``fn`` reads ``logit_bias``

    def __call__(self, a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor,
                 logit_bias: torch.Tensor | None = None,
                 labels: Sequence[str] | torch.Tensor | None = None) -> torch.Tensor:
        return self.fn(a, b, logit_scale, logit_bias, labels=labels)


LOSSES: Registry[ContrastiveLoss] = Registry("loss")


def positives(n: int, labels: Sequence[str] | torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """``[n, n]`` float matrix: 1 where samples i and j are positives (same label, or i == j)."""
    if labels is None:
        return torch.eye(n, device=device)
    if not isinstance(labels, torch.Tensor):
        index = {name: k for k, name in enumerate(dict.fromkeys(labels))}
        labels = torch.tensor([index[name] for name in labels], device=device)
    return (labels[:, None] == labels[None, :]).float()


def clip_loss(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor | None = None,
    labels: Sequence[str] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between L2-normalised ``a`` and ``b`` (``[B, D]`` each)."""
    logits = logit_scale.exp().clamp(max=100) * a @ b.t()
    pos = positives(len(a), labels, a.device)
    targets = pos / pos.sum(1, keepdim=True)
    loss_a = -(targets * logits.log_softmax(1)).sum(1).mean()
    loss_b = -(targets.t() * logits.t().log_softmax(1)).sum(1).mean()
    return (loss_a + loss_b) / 2


def siglip_loss(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor | None = None,
    labels: Sequence[str] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Pairwise sigmoid loss, summed over pairs and averaged over the batch (as in the paper)."""
    logits = logit_scale.exp() * a @ b.t() + (0.0 if logit_bias is None else logit_bias)
    signs = 2 * positives(len(a), labels, a.device) - 1
    return -nn.functional.logsigmoid(signs * logits).sum() / len(a)


LOSSES.register("clip", Loss(clip_loss, uses_bias=False))
LOSSES.register("siglip", Loss(siglip_loss, uses_bias=True))
