"""Heads of the ``qa`` task (:mod:`xmodal.tasks.qa`): text-video fusion by cross-attention, and the zero-shot scorer.

:class:`FusionHead` follows the query-over-video design of video QA transformers (the question and
the candidate answers attend to the frames, e.g. the answer decoder of "Just Ask", Yang et al., ICCV
2021, and the cross-modal encoders of FrozenBiLM, Yang et al., NeurIPS 2022, kept small): frame
features are projected to the fusion width, tagged with their position and mixed by a temporal
encoder, so that every frame knows what happens before and after it; the question and each choice
(the question added to it) are text tokens that, block after block, attend to each other (choices
compare themselves) and to the frames (cross-attention). A choice's score is read from its token;
open-ended, the question token is classified over the answer vocabulary. Text embeddings are
standardised per feature first, and a choice also enters as its difference from the row's other
choices: sentence embeddings of one template differ in a few features only. Strategies that average
the frames (head kind ``linear`` or ``mean``: the linear probe) give the fusion one order-blind frame
token. With ``use_video=False`` the same head has no cross-attention and no video part: the
question-only baseline.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from xmodal.tasks.heads import HeadConfig, VideoHead

ORDER_BLIND = ("linear", "mean")  # strategy head kinds that average the frames (the fusion then sees one token)


class Standardise(nn.Module):
    """Per-feature standardisation of text embeddings by running statistics of the training batches (nothing
    learned). Sentences of one template share most of their embedding ("what colour is the shape moving
    left / right?"); scaled to unit variance per feature, the few features that tell them apart are what
    the projection sees first."""

    def __init__(self, dim: int, momentum: float = 0.05) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and len(x) > 1:
            with torch.no_grad():
                rate = self.momentum if self.seen > 0 else 1.0
                self.mean.lerp_(x.mean(0).float(), rate)
                self.var.lerp_(x.var(0).float(), rate)
                self.seen += 1
        return (x - self.mean) / (self.var + 1e-5).sqrt()


def centred(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x [B, K, F]`` minus its mean over each row's real choices (``mask [B, K]``)."""
    return x - (x * mask[..., None]).sum(1, keepdim=True) / mask.sum(1)[:, None, None]


class SimilarityCurves(nn.Module):
    """Per choice ``[B, K, width]``: its similarity curves over the frames, mapped by an MLP over time.

    Curves (each ``[B, K, frames]``, centred over the row's choices, so that what one choice has more
    than the others stands out): each text (the choice, the statement) against the frame embeddings and
    against their change from frame to frame, and ``heads`` learned bilinear similarities per text.
    Clips with fewer frames are padded with zeros, longer ones cut."""

    def __init__(self, embed_dim: int, frames: int, width: int, heads: int, head_dim: int = 32) -> None:
        super().__init__()
        self.frames, self.heads, self.head_dim = frames, heads, head_dim
        self.video_map = nn.Linear(embed_dim, heads * head_dim) if heads else None
        self.text_map = nn.Linear(embed_dim, heads * head_dim) if heads else None
        curves = 2 * (1 + heads) * frames + 2 * (frames - 1)  # 2 texts x (frames, changes, learned heads)
        self.mlp = nn.Sequential(nn.Linear(curves, width), nn.GELU(), nn.Linear(width, width))

    def _learned(self, frames: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        (b, t, _), k = frames.shape, text.shape[1]
        v = self.video_map(frames).view(b, t, self.heads, self.head_dim)
        w = self.text_map(text).view(b, k, self.heads, self.head_dim)
        return torch.einsum("bthe,bkhe->bkht", v, w).flatten(2) / self.head_dim ** 0.5

    def forward(self, frames: torch.Tensor, texts: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """``frames [B, T, D]`` L2-normalised, ``texts``: 2 of ``[B, K, D]`` (choice, statement)."""
        frames = nn.functional.pad(frames[:, : self.frames], (0, 0, 0, max(0, self.frames - frames.shape[1])))
        change = frames[:, 1:] - frames[:, :-1]
        curves = [10 * torch.einsum("btd,bkd->bkt", f, x) for f in (frames, change) for x in texts]
        if self.heads:
            curves += [self._learned(frames, x) for x in texts]
        return self.mlp(centred(torch.cat(curves, -1), mask))


class FusionBlock(nn.Module):
    """Pre-norm block over text tokens: self-attention, cross-attention to the frames (when given), MLP."""

    def __init__(self, width: int, heads: int, dropout: float, cross: bool) -> None:
        super().__init__()
        self.norm1, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(width) if cross else None
        self.cross = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True) if cross else None
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None, memory: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        if self.cross is not None and memory is not None:
            x = x + self.cross(self.norm2(x), memory, memory, need_weights=False)[0]
        return x + self.mlp(self.norm3(x))


class FusionHead(VideoHead):
    """Scores from frame features ``[B, T, F]`` and text embeddings: ``choices(seq, question [B, D],
    choices [B, K, D], mask [B, K])`` -> ``[B, K]`` (padded choices -inf), ``open(seq, question)`` ->
    ``[B, V]`` logits over the answer vocabulary (``answers`` > 0). ``video(seq)`` is the text-free
    part: the encoded frames ``[B, T, width]`` (``[B, 0]`` without video)."""

    def __init__(self, in_dim: int, text_dim: int, cfg: Any, head_cfg: HeadConfig, answers: int = 0,
                 frames_in_space: bool = True) -> None:
        super().__init__()
        w, self.use_video = cfg.width, bool(cfg.use_video)
        self.pooled = head_cfg.kind in ORDER_BLIND  # an order-blind strategy: the frames are averaged first
        if self.use_video:
            self.frame = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, w))
            self.pos = nn.Parameter(torch.randn(1, cfg.num_frames, w) * 0.02)
            layer = nn.TransformerEncoderLayer(w, cfg.heads, 2 * w, cfg.dropout, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.temporal = nn.TransformerEncoder(layer, cfg.video_layers, enable_nested_tensor=False)
            self.memory_norm = nn.LayerNorm(w)
        self.question_norm, self.choice_norm = Standardise(text_dim), Standardise(text_dim)
        self.question = nn.Linear(text_dim, w)
        self.choice = nn.Linear(2 * text_dim, w)  # a choice, and how it differs from the row's other choices
        self.kind = nn.Parameter(torch.randn(2, w) * 0.02)  # token type: question, choice
        self.curves = SimilarityCurves(text_dim, cfg.num_frames, w, cfg.similarity_heads) \
            if self.use_video and cfg.similarity else None
        # frames into the shared space, learned, when the strategy's sequence is not in it
        self.to_space = nn.Linear(in_dim, text_dim) if self.curves is not None and not frames_in_space else None
        self.blocks = nn.ModuleList(FusionBlock(w, cfg.heads, cfg.dropout, self.use_video) for _ in range(cfg.layers))
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, answers or 1))

    def video(self, seq: torch.Tensor) -> torch.Tensor:
        if not self.use_video:
            return seq.new_zeros(len(seq), 0)
        h = self.frame(seq)
        if self.pooled:
            return self.memory_norm(h.mean(1, keepdim=True))
        return self.memory_norm(self.temporal(h + self.pos[:, : seq.shape[1]]))

    def fuse(self, seq: torch.Tensor, tokens: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        memory = self.video(seq) if self.use_video else None
        for block in self.blocks:
            tokens = block(tokens, pad, memory)
        return tokens

    def in_space(self, seq: torch.Tensor, frames: torch.Tensor | None) -> torch.Tensor:
        """``[B, T, D]`` L2-normalised frame embeddings: the strategy's (``frames``), else learned from ``seq``; all
        alike (their mean) for an order-blind strategy."""
        if frames is None and self.to_space is None:
            raise ValueError("this qa head was built for a strategy whose frames are in the shared space: pass frames")
        frames = nn.functional.normalize(self.to_space(seq) if frames is None else frames, dim=-1)
        return frames.mean(1, keepdim=True).expand_as(frames) if self.pooled else frames  # order-blind: one frame

    def choices(self, seq: torch.Tensor, question: torch.Tensor, choices: torch.Tensor, mask: torch.Tensor,
                statements: torch.Tensor | None = None, frames: torch.Tensor | None = None) -> torch.Tensor:
        """``statements [B, K, D]``: the (question, choice) texts; ``frames``: the strategy's frames in the
        shared space (None: learned). Both feed the similarity curves (with the video, when on)."""
        q = self.question(self.question_norm(question))[:, None] + self.kind[0]
        c = torch.zeros_like(choices)
        c[mask] = self.choice_norm(choices[mask]).to(c.dtype)
        c = self.choice(torch.cat([c, centred(c, mask)], -1)) + q + self.kind[1]
        if self.curves is not None:
            texts = (choices, choices if statements is None else statements)
            c = c + self.curves(self.in_space(seq, frames), texts, mask)
        pad = torch.cat([mask.new_zeros(len(mask), 1), ~mask], 1)
        scores = self.out(self.fuse(seq, torch.cat([q, c], 1), pad)[:, 1:])[..., 0]
        return scores.masked_fill(~mask, float("-inf"))

    def open(self, seq: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        q = self.question(self.question_norm(question))[:, None] + self.kind[0]
        return self.out(self.fuse(seq, q, None)[:, 0])


class ZeroShotQA(VideoHead):
    """Zero-shot: the frame-averaged embedding in the shared space against the text of each choice (the
    task's ``prompt``), scaled like CLIP's logits; nothing trains."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.register_buffer("scale", model.base.logit_scale.detach().exp().clamp(max=100).clone())
        self._model = [model]  # not a submodule: the transferred model owns this head

    def video(self, seq: torch.Tensor) -> torch.Tensor:
        frames = self._model[0].frames_in_space(seq)
        return nn.functional.normalize((seq if frames is None else frames).mean(1), dim=-1)

    def choices(self, seq: torch.Tensor, texts: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``texts [B, K, D]``: the prompt of every (question, choice) pair."""
        sim = torch.einsum("bd,bkd->bk", self.video(seq), nn.functional.normalize(texts, dim=-1))
        return (self.scale * sim).masked_fill(~mask, float("-inf"))

    def open(self, seq: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """``answers [V, D]``: the prompt of every vocabulary answer."""
        return self.scale * self.video(seq) @ nn.functional.normalize(answers, dim=-1).t()


def padded(flat: torch.Tensor, counts: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``flat [sum(counts), D]`` -> ``([B, max(counts), D], mask [B, max(counts)])``, zeros where padded."""
    k = max(counts)
    out = flat.new_zeros(len(counts), k, flat.shape[-1])
    mask = torch.zeros(len(counts), k, dtype=torch.bool, device=flat.device)
    start = 0
    for i, n in enumerate(counts):
        out[i, :n], mask[i, :n] = flat[start : start + n], True
        start += n
    return out, mask
