"""Video classification: the ``classify`` task (head, loss, metrics) and classification metrics from
logits (top-1/top-5, mean class accuracy, per-class accuracy, confusion)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from xmodal.errors import DataError
from xmodal.eval.metrics import confusion_matrix, per_class_accuracy, topk_accuracy
from xmodal.tasks.base import TASKS, Groups, SharedSpace, column, frame_average, same_text
from xmodal.tasks.heads import HeadConfig, TemporalHead, VideoHead


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """``logits [N, C]``, ``targets [N]`` (class indices) -> top1, top5, mean_class_accuracy (NaN-free
    mean over classes with items), per_class and the confusion matrix (rows = true)."""
    cm = confusion_matrix(logits.argmax(1), targets, len(classes))
    per_class = per_class_accuracy(cm)
    return {
        "top1": topk_accuracy(logits, targets, 1),
        "top5": topk_accuracy(logits, targets, 5),
        "mean_class_accuracy": float(np.nanmean(per_class)) if len(targets) else float("nan"),
        "per_class": {c: (None if np.isnan(v) else float(v)) for c, v in zip(classes, per_class)},
        "confusion": cm,
    }


# ---------------------------------------------------------------- the classify task
@dataclass
class ClassifyConfig:
    label_column: str = "label"  # manifest column with each clip's class name
    templates: tuple[str, ...] = ("a video of something {}.", "an object {}.", "a shape {}.")  # zero-shot
    # prompts, {} = the class name (the zero_shot strategy scores frame-averaged embeddings against them)


class ClassHead(VideoHead):
    """Class logits from frame features ``[B, T, F]``: a temporal head onto the classes or, when the
    strategy adapts the text side (CoOp), a temporal head into the shared space scored against the
    class names' embeddings (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022)."""

    def __init__(self, model: Any, classes: Sequence[str], width: int, head_cfg: HeadConfig) -> None:
        super().__init__()
        self.classes, self.by_text = list(classes), bool(model.adapts_text)
        self.pool = TemporalHead(width, model.embed_dim if self.by_text else len(self.classes), head_cfg)
        if self.by_text:
            self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self._model = [model]  # not a submodule: the transferred model owns this head

    def video(self, seq: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` class logits."""
        if not self.by_text:
            return self.pool(seq)
        clip = nn.functional.normalize(self.pool(seq), dim=-1)
        return self.logit_scale.exp() * clip @ self._model[0].encode_texts(self.classes).t()


class ZeroShotClassHead(VideoHead):
    """CLIP zero-shot transfer (Radford et al., ICML 2021) on video: the frame-averaged embedding
    against the class names written into prompt templates; nothing trains."""

    def __init__(self, model: Any, classes: Sequence[str], templates: Sequence[str]) -> None:
        super().__init__()
        from xmodal.tasks.zeroshot import build_zero_shot_classifier

        self.register_buffer("weight", build_zero_shot_classifier(model.base, list(classes), templates))
        self.register_buffer("scale", model.base.logit_scale.detach().exp().clamp(max=100).clone())

    def video(self, seq: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.normalize(seq.mean(1), dim=-1) @ self.weight.t()


class ClassifyTask:
    """Registered as ``classify``: action recognition over a manifest's label column."""

    config_cls = ClassifyConfig
    paper = "action recognition: top-1/top-5 and mean class accuracy (Kinetics protocol)"
    columns = ("label",)
    monitor = "val_top1"
    report = ("top1", "top5", "mean_class_accuracy")
    baselines = ()  # zero_shot is the training-free baseline

    def sampling(self, cfg: Any, spec: Any) -> Any:
        return spec  # the model's own frame sampling

    def meta(self, rows: Sequence[dict[str, Any]], cfg: ClassifyConfig) -> dict[str, Any]:
        return {"classes": sorted({str(v) for v in column(rows, cfg.label_column, "train rows")})}

    def targets(self, rows: Sequence[dict[str, Any]], meta: dict[str, Any], cfg: ClassifyConfig, where: str) -> dict[str, Any]:
        index = {c: i for i, c in enumerate(meta["classes"])}
        labels = [str(v) for v in column(rows, cfg.label_column, where)]
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise DataError(where, f"class(es) {unknown[:5]} are not among the training classes {meta['classes'][:10]}")
        return {"labels": torch.tensor([index[x] for x in labels])}

    def batch_groups(self, targets: dict[str, Any], cfg: Any) -> Groups | None:
        return None  # batches mix any rows

    def head(self, model: Any, meta: dict[str, Any], cfg: ClassifyConfig, head_cfg: HeadConfig, trainable: bool) -> nn.Module:
        if not trainable:
            return ZeroShotClassHead(model, meta["classes"], cfg.templates)
        return ClassHead(model, meta["classes"], model.seq_width, head_cfg)

    def loss(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.cross_entropy(model.head.video(seq), batch["labels"])}

    def predict(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return model.head.video(seq)

    def metrics(self, model: Any, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, Any]:
        return classification_metrics(outputs, batch["labels"], model.meta["classes"])

    def space(self, model: Any) -> SharedSpace | str:
        """Zero-shot head: frame-averaged embeddings and the text tower's; a class-text head (CoOp): the clip
        embedding it scores against class names, and texts through the strategy's text side; a class head
        without texts has none."""
        head = model.head
        if isinstance(head, ZeroShotClassHead):
            return SharedSpace(lambda seq: frame_average(model.frames_in_space(seq)), same_text)
        if head.by_text:
            return SharedSpace(lambda seq: nn.functional.normalize(head.pool(seq), dim=-1), same_text)
        return (f"its classify head maps clips to {len(head.classes)} class logits only, with no embedding that texts "
                "share")


TASKS.register("classify", ClassifyTask())
