"""Video-text retrieval: the ``retrieve`` task (contrastive training of the video side) and metrics.

Training is CLIP4Clip's (Luo et al., "CLIP4Clip: An Empirical Study of CLIP for End to End Video
Clip Retrieval", Neurocomputing 2022): a symmetric InfoNCE loss between clip embeddings and caption
embeddings with a learnable temperature; the similarity head is the strategy's temporal head mapped
into the shared space (``head.kind=mean`` is CLIP4Clip's parameter-free-pooling "meanP" with a
projection, ``transformer`` its "seqTransf"). Rows that match (equal ``match_columns``, or identical
captions) are positives of each other, in the loss and in the metrics. Metrics: R@1/5/10, median and
mean rank, text-to-video and video-to-text (the MSR-VTT protocol).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.engine import distributed
from xmodal.engine.losses import clip_loss
from xmodal.eval.metrics import retrieval_metrics
from xmodal.tasks.base import TASKS, Groups, SharedSpace, column
from xmodal.tasks.heads import HeadConfig, TemporalHead, VideoHead


def text_retrieval(video: torch.Tensor, text: torch.Tensor, captions: Sequence[str],
                   groups: torch.Tensor | None = None) -> dict[str, float]:
    """``video [N, D]`` and ``text [N, D]`` (row i = clip i and its caption), L2-normalised.

    Rows with equal ``groups`` ids (default: identical captions) count as correct matches of each
    other. Keys ``v2t_R@1``, ..., ``v2t_median_rank``, ``v2t_mean_rank``, ``t2v_R@1``, ..."""
    if groups is None:
        groups = group_ids([[c] for c in captions])
    same = groups[:, None] == groups[None, :]
    sim = video.float() @ text.float().t()
    out = {f"v2t_{k}": v for k, v in retrieval_metrics(sim, same).items()}
    out.update({f"t2v_{k}": v for k, v in retrieval_metrics(sim.t(), same.t()).items()})
    return out


def group_ids(keys: Sequence[Sequence[Any]]) -> torch.Tensor:
    """``[N]`` ids, equal where the key tuples are equal."""
    index: dict[tuple, int] = {}
    return torch.tensor([index.setdefault(tuple(k), len(index)) for k in keys], dtype=torch.long)


@dataclass
class RetrieveConfig:
    caption_column: str = "caption"  # manifest column with each clip's caption
    match_columns: tuple[str, ...] = ()  # rows equal in all these columns are interchangeable matches (e.g. a
    # video id with several captions, or the world's colour, shape and motion); () = identical captions only
    temperature: float = 0.07  # initial softmax temperature of the learnable logit scale
    text_head: bool = True  # a trainable residual linear map on the caption embeddings (zero at the start), so
    # that a locked text tower's space can stretch the words that tell clips apart (LiT allows a text head)


class RetrievalHead(VideoHead):
    """Clip embedding in the shared space: the mean of the frame embeddings (CLIP4Clip's meanP) plus the
    temporal head's output, normalised. The head's output layer starts at zero, so training starts from
    the zero-shot embedding and learns what frames alone miss (order, motion); when the strategy's
    sequence is not in the tower's feature space (``model.frames_in_space`` is None), the head learns
    the whole embedding."""

    def __init__(self, model: Any, head_cfg: HeadConfig, cfg: RetrieveConfig) -> None:
        super().__init__()
        self.pool = TemporalHead(model.seq_width, model.embed_dim, head_cfg)
        self.text_map = nn.Linear(model.embed_dim, model.embed_dim) if cfg.text_head else None
        if self.text_map is not None:
            nn.init.zeros_(self.text_map.weight)
            nn.init.zeros_(self.text_map.bias)
        self.residual = model.frame_embed is not None
        if self.residual:
            last = self.pool.out if isinstance(self.pool.out, nn.Linear) else self.pool.out[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.temperature)))
        self._model = [model]  # not a submodule: the transferred model owns this head

    def video(self, seq: torch.Tensor) -> torch.Tensor:
        out = self.pool(seq)
        if self.residual:
            out = out + self._model[0].frames_in_space(seq).mean(1)
        return nn.functional.normalize(out, dim=-1)

    def text(self, texts: torch.Tensor) -> torch.Tensor:
        """Caption embeddings ``[N, D]`` through the text map (when there is one), normalised."""
        return texts if self.text_map is None else nn.functional.normalize(texts + self.text_map(texts), dim=-1)


class MeanEmbedding(VideoHead):
    """Zero-shot clip embedding: the mean of the frame embeddings, normalised (nothing trains)."""

    def video(self, seq: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(seq.mean(1), dim=-1)

    def text(self, texts: torch.Tensor) -> torch.Tensor:
        return texts


class RetrieveTask:
    """Registered as ``retrieve``."""

    config_cls = RetrieveConfig
    paper = "CLIP4Clip (Luo et al., Neurocomputing 2022); MSR-VTT retrieval protocol"
    columns = ("caption",)
    monitor = "val_t2v_R@1"
    report = ("t2v_R@1", "t2v_R@5", "v2t_R@1", "t2v_median_rank")
    baselines = ()  # zero_shot is the training-free baseline

    def sampling(self, cfg: Any, spec: Any) -> Any:
        return spec  # the model's own frame sampling

    def meta(self, rows: Sequence[dict[str, Any]], cfg: RetrieveConfig) -> dict[str, Any]:
        return {}

    def targets(self, rows: Sequence[dict[str, Any]], meta: dict[str, Any], cfg: RetrieveConfig, where: str) -> dict[str, Any]:
        captions = [str(c) for c in column(rows, cfg.caption_column, where)]
        keys = [[str(v) for v in column(rows, c, where)] for c in cfg.match_columns] if cfg.match_columns else [captions]
        return {"captions": captions, "groups": group_ids(list(zip(*keys)))}

    def batch_groups(self, targets: dict[str, Any], cfg: Any) -> Groups | None:
        return None  # batches mix any rows

    def head(self, model: Any, meta: dict[str, Any], cfg: RetrieveConfig, head_cfg: HeadConfig, trainable: bool) -> nn.Module:
        return RetrievalHead(model, head_cfg, cfg) if trainable else MeanEmbedding()

    def loss(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        video, text = model.head.video(seq), model.head.text(model.encode_texts(batch["captions"]))
        # under torchrun: the global batch's pairs (global negatives; see engine/distributed.py)
        video, text, groups = (distributed.gather(x) for x in (video, text, batch["groups"]))
        return {"loss": clip_loss(video, text, model.head.logit_scale, labels=groups)}

    def predict(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return model.head.video(seq)

    def metrics(self, model: Any, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, Any]:
        with torch.no_grad():
            text = model.head.text(model.encode_texts(batch["captions"])).float().cpu()
        return text_retrieval(outputs.float().cpu(), text, batch["captions"], batch["groups"])

    def space(self, model: Any) -> SharedSpace | str:
        """The clip embedding the head was trained to match captions with, and its text map."""
        return SharedSpace(model.head.video, model.head.text)


TASKS.register("retrieve", RetrieveTask())
