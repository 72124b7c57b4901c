"""Collapse diagnostics of a batch of embeddings: how alike they are and how many directions they span.

A contrastive run can lower its loss while one tower maps every input to (nearly) the same point, for
instance when a batch holds the same caption many times and each copy is a negative of the others.
Two numbers per batch show it early:

- the mean pairwise cosine of the batch's L2-normalised embeddings (off-diagonal pairs): 1 when all
  are one point;
- the effective rank (Roy & Vetterli, "The effective rank: a measure of effective dimensionality",
  EUSIPCO 2007): ``exp`` of the entropy of the normalised singular values, between 1 (one direction)
  and the batch size.

:func:`collapse` says when the two together mean collapse, in one line.
"""

from __future__ import annotations

import torch
from torch import nn

COLLAPSE_COSINE = 0.9  # a batch whose distinct inputs are this alike on average has collapsed ...
COLLAPSE_RANK = 1.5  # ... or one that spans fewer effective directions than this


@torch.no_grad()
def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """Mean cosine over the off-diagonal pairs of the rows of ``x`` (``[B, D]``, B >= 2)."""
    x = nn.functional.normalize(x.detach().float(), dim=-1)
    n = len(x)
    if n < 2:
        return float("nan")
    sims = x @ x.t()
    return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))


@torch.no_grad()
def effective_rank(x: torch.Tensor) -> float:
    """``exp(H(p))`` with ``p`` the singular values of the L2-normalised rows of ``x``, summing to one
    (from the eigenvalues of their ``[B, B]`` Gram matrix: cheaper than an SVD of ``[B, D]``)."""
    x = nn.functional.normalize(x.detach().double(), dim=-1)
    s = torch.linalg.eigvalsh(x @ x.t()).clamp(min=0).sqrt()
    p = s / s.sum().clamp(min=1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def spread(x: torch.Tensor, name: str) -> dict[str, float]:
    """``{"cos_<name>": mean pairwise cosine, "rank_<name>": effective rank}`` of one batch."""
    return {f"cos_{name}": mean_pairwise_cosine(x), f"rank_{name}": effective_rank(x)}


def collapse(record: dict[str, float], name: str, other: str | None = None, prefix: str = "") -> str | None:
    """One line saying that ``name``'s embeddings collapsed in ``record`` (its ``{prefix}cos_<name>`` and
    ``{prefix}rank_<name>``, from :func:`spread`), or None when they did not (or were not measured). With
    ``other`` (the side they are paired with), embeddings no more alike than the other side's are not
    collapsed: they are as narrow as what they are trained to match (the data is)."""
    cos, rank = record.get(f"{prefix}cos_{name}"), record.get(f"{prefix}rank_{name}")
    if cos is None or rank is None or not (cos >= COLLAPSE_COSINE or rank < COLLAPSE_RANK):
        return None
    cos_other = record.get(f"{prefix}cos_{other}")
    if cos_other is not None and cos <= cos_other:
        return None
    mode = " in evaluation mode" if prefix else ""
    return (f"{name} embeddings collapsed{mode} at epoch {int(record.get('epoch', 0))}: mean pairwise cosine {cos:.3f}, "
            f"effective rank {rank:.2f} (nearly one point for every input; see {prefix}cos_{name} in the log)")
