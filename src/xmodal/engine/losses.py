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
    """``[n, n]`` float matrix: 1 where samples i and j are positives (same label, or i == j). A 2-D
    ``labels`` tensor is that matrix already: row i weighs ``b``'s samples as targets of ``a``'s sample i
    (soft weights in [0, 1] for mixed samples, as in mixup)."""
    if labels is None:
        return torch.eye(n, device=device)
    if isinstance(labels, torch.Tensor) and labels.ndim == 2:
        return labels.to(device=device, dtype=torch.float32)
    if not isinstance(labels, torch.Tensor):
        index = {name: k for k, name in enumerate(dict.fromkeys(labels))}
        labels = torch.tensor([index[name] for name in labels], device=device)
    return (labels[:, None] == labels[None, :]).float()


def clip_loss(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor | None = None,
    labels: Sequence[str] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between L2-normalised ``a`` and ``b`` (``[B, D]`` each); each direction's
    targets are its rows of the positives, normalised to sum to one."""
    logits = logit_scale.exp().clamp(max=100) * a @ b.t()
    pos = positives(len(a), labels, a.device)
    loss_a = -(_rows(pos) * logits.log_softmax(1)).sum(1).mean()
    loss_b = -(_rows(pos.t()) * logits.t().log_softmax(1)).sum(1).mean()
    return (loss_a + loss_b) / 2


def _rows(weights: torch.Tensor) -> torch.Tensor:
    """``weights`` with each row scaled to sum to one (a row of zeros stays zeros)."""
    return weights / weights.sum(1, keepdim=True).clamp(min=1e-12)


def siglip_loss(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor | None = None,
    labels: Sequence[str] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Pairwise sigmoid loss, summed over pairs and averaged over the batch (as in the paper); a soft
    positive weight p scores a pair as p * positive + (1 - p) * negative."""
    logits = logit_scale.exp() * a @ b.t() + (0.0 if logit_bias is None else logit_bias)
    pos = positives(len(a), labels, a.device)
    pairs = pos * nn.functional.logsigmoid(logits) + (1 - pos) * nn.functional.logsigmoid(-logits)
    return -pairs.sum() / len(a)


LOSSES.register("clip", Loss(clip_loss, uses_bias=False))
LOSSES.register("siglip", Loss(siglip_loss, uses_bias=True))
