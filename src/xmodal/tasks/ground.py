"""Temporal video grounding: the ``ground`` task (an untrimmed clip + a sentence -> [start, end] s).

The head is proposal-free, in the spirit of Moment-DETR (Lei et al., "QVHighlights: Detecting Moments
and Highlights in Videos via Natural Language Queries", NeurIPS 2021) and UniVTG (Lin et al., ICCV
2023): the frames and the sentence are projected to one width, the sentence is added to every frame
and prepended as a token, a temporal transformer mixes them, and every frame scores being the start,
the end and inside the moment; the span maximising start + end scores (start <= end) is the answer.
The zero-shot baseline slides windows over the frame-text similarities of the frozen model and picks
the contiguous window whose standardised frame-text similarities sum highest. Metrics are those of Charades-STA
and QVHighlights: R@1 at IoU 0.3 / 0.5 / 0.7 and the mean IoU.

Manifest rows: ``path, query, start, end, duration`` (seconds; one row per moment, several rows may
share a clip). Clips are sampled in ``num_frames`` equal segments (the middle frame of each), so
frame i stands for the time ``[i, i + 1) * duration / num_frames``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.errors import DataError
from xmodal.tasks.base import TASKS, Groups, SharedSpace, column, frame_average, same_text
from xmodal.tasks.heads import HeadConfig

IOUS = (0.3, 0.5, 0.7)


@dataclass
class GroundConfig:
    query_column: str = "query"  # manifest column with the sentence to ground
    start_column: str = "start"  # moment start, seconds
    end_column: str = "end"  # moment end, seconds
    duration_column: str = "duration"  # length of the clip, seconds
    num_frames: int = 16  # frames sampled per untrimmed clip (one per equal segment)
    width: int = 64  # hidden width of the grounding head
    layers: int = 2  # temporal transformer layers
    heads: int = 4  # attention heads
    inside_weight: float = 1.0  # weight of the per-frame "inside the moment" loss next to start/end


def span_targets(start: torch.Tensor, end: torch.Tensor, duration: torch.Tensor, t: int) -> dict[str, torch.Tensor]:
    """Frame indices of each moment's first and last frame and its per-frame inside mask ``[N, T]``."""
    s = (start / duration * t).floor().long().clamp(0, t - 1)
    e = torch.maximum((end / duration * t).ceil().long() - 1, s).clamp(max=t - 1)
    frames = torch.arange(t)[None]
    return {"start_idx": s, "end_idx": e, "inside": ((frames >= s[:, None]) & (frames <= e[:, None])).float()}


def best_span(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """``[B, 2]`` frame indices (i, j), i <= j, maximising ``start[i] + end[j]`` (scores ``[B, T]``)."""
    t = start.shape[1]
    score = start[:, :, None] + end[:, None, :]
    score = score.masked_fill(~torch.ones(t, t, dtype=torch.bool, device=start.device).triu(), float("-inf"))
    flat = score.flatten(1).argmax(1)
    return torch.stack([flat // t, flat % t], 1)


def to_seconds(span: torch.Tensor, duration: torch.Tensor, t: int) -> torch.Tensor:
    """Frame index spans ``[B, 2]`` -> ``[start, end]`` seconds (frame i covers [i, i+1) * duration / T)."""
    d = duration.to(span.device, torch.float32)[:, None] / t
    return torch.stack([span[:, 0] * d[:, 0], (span[:, 1] + 1) * d[:, 0]], 1)


def temporal_iou(pred: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """``[N]`` IoU of ``[N, 2]`` predicted and true intervals."""
    inter = (torch.minimum(pred[:, 1], gold[:, 1]) - torch.maximum(pred[:, 0], gold[:, 0])).clamp(min=0)
    union = torch.maximum(pred[:, 1], gold[:, 1]) - torch.minimum(pred[:, 0], gold[:, 0])
    return inter / union.clamp(min=1e-9)


def grounding_metrics(pred: torch.Tensor, gold: torch.Tensor) -> dict[str, float]:
    """R@1 at IoU 0.3/0.5/0.7 (keys ``R1@0.3`` ...) and ``mIoU`` of predicted vs true intervals."""
    iou = temporal_iou(pred.float(), gold.float())
    out = {f"R1@{k}": float((iou >= k).float().mean()) for k in IOUS}
    out["mIoU"] = float(iou.mean())
    return out


class GroundingHead(nn.Module):
    """Start / end / inside scores per frame from frame features ``[B, T, F]`` and a sentence ``[B, D]``."""

    def __init__(self, in_dim: int, text_dim: int, cfg: GroundConfig, max_frames: int) -> None:
        super().__init__()
        w = cfg.width
        self.frame = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, w))
        self.text = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, w))
        self.pos = nn.Parameter(torch.randn(1, max_frames + 1, w) * 0.02)
        layer = nn.TransformerEncoderLayer(w, cfg.heads, 2 * w, 0.0, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, 3))

    def video(self, seq: torch.Tensor) -> torch.Tensor:
        """The text-free part: projected frame features ``[B, T, width]``."""
        return self.frame(seq)

    def forward(self, seq: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3]``: start, end and inside logits of every frame."""
        frames, query = self.video(seq), self.text(text)[:, None]
        x = torch.cat([query, frames + query], 1) + self.pos[:, : seq.shape[1] + 1]
        return self.out(self.encoder(x)[:, 1:])

    def spans(self, seq: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        logits = self(seq, text)
        return best_span(logits[..., 0].log_softmax(1), logits[..., 1].log_softmax(1))


class SlidingWindow(nn.Module):
    """Zero-shot baseline over frame embeddings: every window (any start, any length) is scored by the
    sum of its frames' standardised frame-text similarities, i.e. the contiguous stretch of the clip
    most above the clip's average match to the sentence. Nothing trains."""

    def video(self, seq: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(seq, dim=-1)

    def spans(self, seq: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        sim = (self.video(seq) @ nn.functional.normalize(text, dim=-1)[:, :, None])[..., 0]  # [B, T]
        z = (sim - sim.mean(1, keepdim=True)) / sim.std(1, keepdim=True).clamp(min=1e-6)
        cum = torch.cat([z.new_zeros(len(z), 1), z.cumsum(1)], 1)
        i, j = torch.triu_indices(sim.shape[1], sim.shape[1], device=sim.device)  # windows [i, j]
        best = (cum[:, j + 1] - cum[:, i]).argmax(1)
        return torch.stack([i[best], j[best]], 1)


class GroundTask:
    """Registered as ``ground``."""

    config_cls = GroundConfig
    paper = "temporal grounding, Charades-STA / QVHighlights protocol; head after Moment-DETR / UniVTG"
    columns = ("query", "start", "end", "duration")
    monitor = "val_R1@0.5"
    report = ("R1@0.5", "R1@0.3", "R1@0.7", "mIoU")
    baselines = ()  # zero_shot is the training-free baseline

    def sampling(self, cfg: GroundConfig, spec: Any) -> Any:
        """Untrimmed clips: ``num_frames`` equal segments, the middle frame of each."""
        return dataclasses.replace(spec, num_frames=cfg.num_frames, sampling="segment", train=False)

    def meta(self, rows: Sequence[dict[str, Any]], cfg: GroundConfig) -> dict[str, Any]:
        return {"num_frames": cfg.num_frames}

    def targets(self, rows: Sequence[dict[str, Any]], meta: dict[str, Any], cfg: GroundConfig, where: str) -> dict[str, Any]:
        start, end, duration = (torch.tensor(column(rows, c, where, numeric=True), dtype=torch.float32)
                                for c in (cfg.start_column, cfg.end_column, cfg.duration_column))
        for k in range(len(rows)):
            if not 0 <= start[k] < end[k] <= duration[k] + 1e-6:
                raise DataError(where, f"row {k + 1} ({rows[k].get('path', '?')}): moment [{float(start[k])}, "
                                       f"{float(end[k])}] s is not inside the clip's {float(duration[k])} s")
        out = {"queries": [str(q) for q in column(rows, cfg.query_column, where)],
               "spans": torch.stack([start, end], 1), "duration": duration}
        return {**out, **span_targets(start, end, duration, meta["num_frames"])}

    def batch_groups(self, targets: dict[str, Any], cfg: Any) -> Groups | None:
        return None  # batches mix any rows

    def head(self, model: Any, meta: dict[str, Any], cfg: GroundConfig, head_cfg: HeadConfig, trainable: bool) -> nn.Module:
        return GroundingHead(model.seq_width, model.embed_dim, cfg, meta["num_frames"]) if trainable else SlidingWindow()

    def loss(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = model.head(seq, model.encode_texts(batch["queries"]))
        ce = nn.functional.cross_entropy
        bounds = ce(logits[..., 0], batch["start_idx"]) + ce(logits[..., 1], batch["end_idx"])
        inside = nn.functional.binary_cross_entropy_with_logits(logits[..., 2], batch["inside"])
        weight = model.task_config.inside_weight
        return {"loss": bounds + weight * inside, "bounds": bounds.detach(), "inside": inside.detach()}

    def predict(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """``[B, 2]`` predicted [start, end], seconds."""
        span = model.head.spans(seq, model.encode_texts(batch["queries"]))
        return to_seconds(span, batch["duration"], seq.shape[1])

    def metrics(self, model: Any, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, Any]:
        return grounding_metrics(outputs.cpu(), batch["spans"].cpu())

    def space(self, model: Any) -> SharedSpace | str:
        """The zero-shot head's frame embeddings, averaged; a trained grounding head has none."""
        if isinstance(model.head, SlidingWindow):
            return SharedSpace(lambda seq: frame_average(model.frames_in_space(seq)), same_text)
        return "its ground head scores the frames of a clip against one sentence (start/end), with no clip embedding"


TASKS.register("ground", GroundTask())
