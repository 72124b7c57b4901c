"""Tasks as an extension point: what a transferred video model is trained for and measured on.

A strategy (``xmodal.strategies``) adapts the backbone and yields, per clip, a sequence of frame
features ``[B, T, F]``; a task supplies everything else, so that any strategy runs any task on the
one engine (cf. the task map of image-to-video transfer: recognition, retrieval, grounding,
captioning, question answering). A registered task is an object with:

- ``config_cls``: its config dataclass (one comment per field);
- ``columns``: the manifest columns a row needs besides the video path (its data schema);
- ``monitor`` / ``report``: the validation metric early stopping watches, and the metric keys a
  comparison table shows;
- ``baselines``: controls ``xmodal compare`` runs beside the strategies, as ``(label, strategy, task
  option overrides)`` (e.g. question answering without the video), () for none;
- ``sampling(cfg, spec)``: the VideoSpec clips are decoded with (e.g. more frames for grounding);
- ``meta(rows, cfg)``: what the head is built for, from the training rows (e.g. the class names);
- ``targets(rows, meta, cfg, where)``: per-row targets (tensors ``[N, ...]`` or lists of N items);
  a bad row is a DataError naming the manifest and the row;
- ``batch_groups(targets, cfg)``: a :class:`Groups` when a training batch must hold rows of one group
  only (the tasks of a multi-task run: ``[N]`` ids, and whether every group gets as many batches per
  epoch), else None;
- ``head(model, meta, cfg, head_cfg, trainable)``: the head module over ``[B, T, F]`` (its
  ``video(seq)`` gives the video-only output that efficiency figures time); ``trainable=False``
  asks for the parameter-free zero-shot head over frame embeddings in the shared space;
- ``loss(model, seq, batch)`` -> ``{"loss": ...}``, ``predict(model, seq, batch)`` -> per-row
  outputs, ``metrics(model, outputs, batch)`` -> figures;
- ``space(model)``: how the trained head puts clips and texts in one shared space (a
  :class:`SharedSpace`, what ``xmodal.load(RUN/model)`` embeds with for index, search and zero-shot),
  or one line saying why it has none (a head that only outputs class logits, spans or tokens).

A generative task (captioning: a decoder over ``seq``, targets are token ids, ``predict`` decodes)
and a multiple-choice task (targets are choices and an answer index) fit the same contract.
``model`` is the transferred model: ``model.head`` (the task head), ``model.encode_texts(texts)``
(``[N, D]`` L2-normalised, through the strategy's text adaptation when it has one; frozen text is
encoded once and cached), ``model.embed_dim`` and ``model.base``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from xmodal.errors import DataError
from xmodal.registry import Registry


@dataclass
class SharedSpace:
    """A transferred model's clips and texts in one space (``Task.space``): what search and zero-shot compare."""

    video: Callable[[torch.Tensor], torch.Tensor]  # [B, T, F] frame features -> [B, D] L2-normalised clip embeddings
    text: Callable[[torch.Tensor], torch.Tensor]  # [N, D] text embeddings (``model.encode_texts``) -> [N, D], normalised


@dataclass
class Groups:
    """Rows a training batch may mix (``Task.batch_groups``): batches hold one group's rows each."""

    ids: torch.Tensor  # [N] group id per row (a multi-task run: the row's task)
    balanced: bool = False  # every group as many batches per epoch (the mean count: a small group's rows repeat,
    # a large one's are a fresh subset each epoch); False: every row once per epoch


def frame_average(seq: torch.Tensor) -> torch.Tensor:
    """``[B, D]``: the normalised mean of normalised frame embeddings ``[B, T, D]`` (zero-shot heads' clip)."""
    return nn.functional.normalize(nn.functional.normalize(seq, dim=-1).mean(1), dim=-1)


def same_text(texts: torch.Tensor) -> torch.Tensor:
    """Text embeddings as the text side gives them (a head without a text map)."""
    return texts


@runtime_checkable
class Task(Protocol):
    config_cls: type  # the task's config dataclass
    paper: str  # the protocol or method it follows, for reports
    columns: tuple[str, ...]  # manifest columns a row must have, besides the video path column
    monitor: str  # validation metric early stopping watches (higher is better)
    report: tuple[str, ...]  # metric keys shown in comparison tables, the headline first
    baselines: tuple[tuple[str, str, dict[str, Any]], ...]  # (label, strategy, task options) compare runs too

    def sampling(self, cfg: Any, spec: Any) -> Any: ...

    def meta(self, rows: Sequence[dict[str, Any]], cfg: Any) -> dict[str, Any]: ...

    def targets(self, rows: Sequence[dict[str, Any]], meta: dict[str, Any], cfg: Any, where: str) -> dict[str, Any]: ...

    def batch_groups(self, targets: dict[str, Any], cfg: Any) -> Groups | None: ...

    def head(self, model: Any, meta: dict[str, Any], cfg: Any, head_cfg: Any, trainable: bool) -> nn.Module: ...

    def loss(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]: ...

    def predict(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor: ...

    def metrics(self, model: Any, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, Any]: ...

    def space(self, model: Any) -> SharedSpace | str: ...


TASKS: Registry[Task] = Registry("task")


def take(targets: dict[str, Any], idx: torch.Tensor | Sequence[int]) -> dict[str, Any]:
    """The rows ``idx`` of per-row targets (tensors are indexed, lists picked item by item)."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    out = {}
    for key, value in targets.items():
        out[key] = value[idx] if isinstance(value, torch.Tensor) else [value[int(i)] for i in idx]
    return out


def column(rows: Sequence[dict[str, Any]], name: str, where: str, numeric: bool = False) -> list[Any]:
    """The values of ``name`` in every row; a missing column, an empty cell or (``numeric``) a value
    that is not a finite number is a DataError naming ``where`` and the row."""
    out = []
    for i, row in enumerate(rows):
        if name not in row:
            raise DataError(where, f"row {i + 1}: no column {name!r}; columns are {sorted(row)}")
        value = row[name]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(where, f"row {i + 1} ({row.get('path', '?')}): empty {name!r}")
        if numeric:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise DataError(where, f"row {i + 1} ({row.get('path', '?')}): {name}={value!r} is not a number") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise DataError(where, f"row {i + 1} ({row.get('path', '?')}): {name}={value!r} is not finite")
        out.append(value)
    return out
