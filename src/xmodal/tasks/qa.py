"""Video question answering: the ``qa`` task (multiple choice, or open-ended over an answer vocabulary).

The question's text features are fused with the video by cross-attention (:mod:`xmodal.tasks.qa_heads`):
multiple choice (``mode="choice"``, the TVQA / NExT-QA / MSRVTT-MC protocol) scores every choice of a row
and is trained with cross-entropy over them (rows may have different numbers of choices); open-ended
(``mode="open"``, the MSRVTT-QA / ActivityNet-QA protocol) classifies over the answers of the training
rows, and a test answer outside that vocabulary counts wrong. Metric: accuracy, also per value of
``breakdown_columns`` (``accuracy_<column>_<value>``). ``use_video=False`` is the question-only
baseline (the same head without the video; ``xmodal compare`` runs it beside the strategies): how far
accuracy rises above it is what the video contributes. The zero-shot head scores the frame-averaged
embedding against each choice's text.

Manifest rows: ``path, question, choices, answer`` (choices: a JSON list in JSONL, ``"a|b|c"`` in CSV;
not needed open-ended). Clips are sampled in ``num_frames`` equal segments, since most questions ask
about the order of events.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.errors import ConfigError, DataError
from xmodal.tasks.base import TASKS, Groups, SharedSpace, column, same_text
from xmodal.tasks.heads import HeadConfig
from xmodal.tasks.qa_heads import FusionHead, ZeroShotQA, padded

MODES = ("choice", "open")
GROUP = "group_"  # prefix of the targets that hold a breakdown column's values


@dataclass
class QAConfig:
    question_column: str = "question"  # manifest column with the question
    choices_column: str = "choices"  # the candidate answers: a JSON list (JSONL) or "a|b|c" (CSV); choice mode only
    answer_column: str = "answer"  # the right answer (one of the row's choices in choice mode)
    mode: str = "choice"  # "choice": score the row's choices; "open": classify over the training rows' answers
    use_video: bool = True  # False: the question-only baseline (the same head never sees the video)
    num_frames: int = 16  # frames sampled per clip (one per equal segment: questions ask about order)
    width: int = 64  # width of the fusion head (frames and text tokens are projected to it)
    layers: int = 2  # fusion blocks (text self-attention + cross-attention to the frames + MLP)
    video_layers: int = 1  # temporal encoder layers over the frames before the fusion
    heads: int = 4  # attention heads
    dropout: float = 0.1  # dropout inside the fusion head
    similarity: bool = True  # choice tokens also get their similarity curves to the frames in the shared space
    similarity_heads: int = 4  # learned bilinear frame-text similarities per text, beside the fixed cosine ones
    statement: str = "{question} {choice}"  # the (question, choice) text whose curves join the choice's own ("":
    # the choice alone)
    prompt: str = "{choice}"  # zero-shot text of a choice ({question} and {choice} are filled in; "" question
    # open-ended); the zero_shot strategy scores the frame-averaged embedding against it
    breakdown_columns: tuple[str, ...] = ()  # accuracy per value of these columns too (e.g. ["kind", "held_out"]:
    # keys accuracy_kind_after, accuracy_held_out_true, ...)


def check_config(cfg: QAConfig) -> None:
    if cfg.mode not in MODES:
        raise ConfigError(f"qa.mode {cfg.mode!r} is not one of {list(MODES)}")
    if cfg.width % cfg.heads:
        raise ConfigError(f"qa.width {cfg.width} is not a multiple of qa.heads {cfg.heads}")
    if cfg.num_frames < 1 or cfg.layers < 1 or cfg.video_layers < 1:
        raise ConfigError("qa.num_frames, qa.layers and qa.video_layers must be >= 1")
    if cfg.similarity_heads < 0:
        raise ConfigError(f"qa.similarity_heads must be >= 0, got {cfg.similarity_heads}")
    for name, text in (("statement", cfg.statement), ("prompt", cfg.prompt)):
        try:
            text.format(question="q", choice="c")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"qa.{name} {text!r}: only {{question}} and {{choice}} can be filled in ({exc!r})") from None


def cell_text(value: Any) -> str:
    """A cell as a breakdown key part: booleans as true/false, lower case, runs of other characters as _."""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_") or "empty"


def parse_choices(value: Any, i: int, row: dict[str, Any], where: str) -> list[str]:
    """The choices of row ``i``: a list, a JSON list in a string, or ``"a|b|c"``."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise DataError(where, f"row {i + 1} ({row.get('path', '?')}): choices {text[:60]!r} is not a JSON list") from None
        else:
            value = text.split("|")
    if not isinstance(value, (list, tuple)):
        raise DataError(where, f"row {i + 1} ({row.get('path', '?')}): choices must be a list or 'a|b|c', got {value!r}")
    choices = [str(c).strip() for c in value]
    if len(choices) < 2 or not all(choices) or len(set(choices)) < len(choices):
        raise DataError(where, f"row {i + 1} ({row.get('path', '?')}): needs 2 or more distinct, non-empty choices, "
                               f"got {choices}")
    return choices


def choice_targets(rows: Sequence[dict[str, Any]], answers: list[str], cfg: QAConfig, where: str) -> dict[str, Any]:
    """Each row's choices and the index of its answer among them."""
    choices = [parse_choices(v, i, rows[i], where) for i, v in enumerate(column(rows, cfg.choices_column, where))]
    index = []
    for i, (options, answer) in enumerate(zip(choices, answers)):
        if answer not in options:
            raise DataError(where, f"row {i + 1} ({rows[i].get('path', '?')}): answer {answer!r} is not among its "
                                   f"choices {options}")
        index.append(options.index(answer))
    return {"choices": choices, "answer": torch.tensor(index, dtype=torch.long)}


def qa_metrics(pred: torch.Tensor, answer: torch.Tensor, groups: dict[str, list[str]]) -> dict[str, float]:
    """``accuracy`` of predicted vs true answer indices (-1: an answer the model cannot give, always
    wrong), and ``accuracy_<column>_<value>`` for each value of each breakdown column."""
    correct = (pred.cpu() == answer.cpu()).float()
    out = {"accuracy": float(correct.mean()) if len(correct) else float("nan")}
    for name, values in groups.items():
        for value in sorted(set(values)):
            keep = torch.tensor([v == value for v in values])
            out[f"accuracy_{name}_{value}"] = float(correct[keep].mean())
    return out


class QATask:
    """Registered as ``qa``."""

    config_cls = QAConfig
    paper = "video QA: multiple-choice (TVQA / NExT-QA) and open-ended (MSRVTT-QA) accuracy; cross-attention fusion"
    columns = ("question", "choices", "answer")
    monitor = "val_accuracy"
    report = ("accuracy",)  # with breakdown_columns, compare tables show accuracy_<column>_<value> too
    baselines = (("question_only", "linear_probe", {"use_video": False}),)  # the head without the video

    def sampling(self, cfg: QAConfig, spec: Any) -> Any:
        """``num_frames`` equal segments, the middle frame of each."""
        return dataclasses.replace(spec, num_frames=cfg.num_frames, sampling="segment", train=False)

    def meta(self, rows: Sequence[dict[str, Any]], cfg: QAConfig) -> dict[str, Any]:
        check_config(cfg)
        meta: dict[str, Any] = {"mode": cfg.mode, "num_frames": cfg.num_frames}
        if cfg.mode == "open":
            meta["answers"] = sorted({str(a).strip() for a in column(rows, cfg.answer_column, "train rows")})
        return meta

    def targets(self, rows: Sequence[dict[str, Any]], meta: dict[str, Any], cfg: QAConfig, where: str) -> dict[str, Any]:
        questions = [str(q).strip() for q in column(rows, cfg.question_column, where)]
        answers = [str(a).strip() for a in column(rows, cfg.answer_column, where)]
        for i, q in enumerate(questions):
            if not q:
                raise DataError(where, f"row {i + 1} ({rows[i].get('path', '?')}): empty {cfg.question_column!r}")
        out: dict[str, Any] = {"questions": questions}
        for c in cfg.breakdown_columns:  # per-row lists (targets are indexed row by row): "group_<column>"
            out[f"{GROUP}{cell_text(c)}"] = [cell_text(v) for v in column(rows, c, where)]
        if meta["mode"] == "open":  # an answer outside the training vocabulary: -1, counted wrong
            index = {a: i for i, a in enumerate(meta["answers"])}
            return {**out, "answer": torch.tensor([index.get(a, -1) for a in answers], dtype=torch.long)}
        return {**out, **choice_targets(rows, answers, cfg, where)}

    def batch_groups(self, targets: dict[str, Any], cfg: Any) -> Groups | None:
        return None  # batches mix any rows

    def head(self, model: Any, meta: dict[str, Any], cfg: QAConfig, head_cfg: HeadConfig, trainable: bool) -> nn.Module:
        check_config(cfg)
        if not trainable:
            return ZeroShotQA(model)
        return FusionHead(model.seq_width, model.embed_dim, cfg, head_cfg, len(meta.get("answers", ())),
                          frames_in_space=model.frame_embed is not None)

    def scores(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """``[B, K]`` choice scores (-inf where padded) or ``[B, V]`` answer logits."""
        head, cfg, open_ = model.head, model.task_config, model.meta["mode"] == "open"
        if isinstance(head, ZeroShotQA):
            fill = [(q, c) for q, options in zip(batch["questions"], batch["choices"]) for c in options] if not open_ \
                else [("", a) for a in model.meta["answers"]]
            texts = model.encode_texts([cfg.prompt.format(question=q, choice=c).strip() for q, c in fill])
            if open_:
                return head.open(seq, texts)
            return head.choices(seq, *padded(texts, [len(c) for c in batch["choices"]]))
        question = model.encode_texts(batch["questions"])
        if open_:
            return head.open(seq, question)
        counts = [len(c) for c in batch["choices"]]
        flat = model.encode_texts([c for options in batch["choices"] for c in options])
        if head.curves is None:
            return head.choices(seq, question, *padded(flat, counts))
        said = None if not cfg.statement else padded(model.encode_texts(
            [cfg.statement.format(question=q, choice=c).strip() for q, options in zip(batch["questions"], batch["choices"])
             for c in options]), counts)[0]
        return head.choices(seq, question, *padded(flat, counts), said, model.frames_in_space(seq))

    def loss(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.cross_entropy(self.scores(model, seq, batch), batch["answer"], ignore_index=-1)}

    def predict(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``pred``: the chosen choice's (or vocabulary answer's) index; ``prob``: its softmax probability."""
        prob, pred = self.scores(model, seq, batch).float().softmax(-1).max(-1)
        return {"pred": pred, "prob": prob}

    def metrics(self, model: Any, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, Any]:
        groups = {k[len(GROUP):]: v for k, v in batch.items() if k.startswith(GROUP)}
        return qa_metrics(outputs["pred"], batch["answer"], groups)

    def space(self, model: Any) -> SharedSpace | str:
        """The zero-shot head's clip embedding; a trained fusion head has none."""
        if isinstance(model.head, ZeroShotQA):
            return SharedSpace(model.head.video, same_text)
        return "its qa head fuses a clip with a question into answer scores, with no clip embedding"


TASKS.register("qa", QATask())
