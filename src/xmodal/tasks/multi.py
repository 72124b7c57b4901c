"""One adapted model for several video-language tasks at once: the ``multi`` task.

The survey of image-to-video transfer names a "unified paradigm" as an open direction: one set of
adapted weights serving several tasks. Here any strategy (LoRA, adapters, side networks, ...) is
applied once and every task of ``MultiConfig.tasks`` attaches its own head on top; the manifest mixes
the tasks' rows, each naming its task in ``task_column`` and carrying that task's columns (a
classification row its label, a grounding row its query and moment, a QA row its question, choices
and answer, ...). Batches hold the rows of one task (``batch_groups``), so each step is one task's loss
through the shared strategy, and a contrastive task keeps a full batch of negatives. Metrics are each
task's, prefixed with its name (``classify_top1``, ``qa_accuracy``, ...), and ``score`` is the mean of
the tasks' headline metrics, which early stopping watches.

Frames are sampled for all rows as the task that asks for the most frames does (e.g. grounding's
equal segments), since one decoded clip set serves every task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.config import from_dict
from xmodal.errors import ConfigError, DataError
from xmodal.tasks.base import TASKS, Groups, SharedSpace
from xmodal.tasks.heads import HeadConfig, VideoHead

NAME = "multi"
SAMPLING = ("uniform", "proportional")  # MultiConfig.sampling values


@dataclass
class MultiConfig:
    tasks: tuple[str, ...] = ("classify", "retrieve", "ground", "qa")  # registered tasks trained together (+ "caption")
    task_column: str = "task"  # manifest column naming each row's task
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # each task's options, e.g.
    # {"retrieve": {"match_columns": ["colour", "shape"]}}
    weights: dict[str, float] = field(default_factory=dict)  # loss weight per task (1.0 when absent)
    sampling: str = "proportional"  # training steps per task: "proportional" (every row once per epoch) or
    # "uniform" (every task as many batches per epoch, the mean count: a task with few rows repeats them, one with
    # many uses a fresh subset each epoch; uniform task sampling, so a small task is not starved)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("multi task: no tasks given")
        for name in self.tasks:
            TASKS.get(name)  # unknown names fail here, with the known ones
            if name == NAME:
                raise ConfigError("multi task: 'multi' cannot be one of its own tasks")
        if self.sampling not in SAMPLING:
            raise ConfigError(f"multi task: sampling {self.sampling!r} is not one of {list(SAMPLING)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"multi task: a task is listed twice in {list(self.tasks)}")
        for key in (*self.options, *self.weights):
            if key not in self.tasks:
                raise ConfigError(f"multi task: options or weights for {key!r}, which is not among tasks {list(self.tasks)}")
        self.configs()  # each task's options are checked now

    def configs(self) -> dict[str, Any]:
        """Each task's config dataclass, from ``options``."""
        return {t: from_dict(TASKS.get(t).config_cls, dict(self.options.get(t, {})), where=f"{t} task options")
                for t in self.tasks}


class TaskView:
    """The transferred model as one task of a multi-task model sees it: its own head, meta and config;
    everything else (texts, the shared space, the base) is the model's."""

    def __init__(self, model: Any, task: str, config: Any) -> None:
        self.model, self.task, self.task_config = model, task, config

    @property
    def head(self) -> nn.Module:
        return self.model.head.heads[self.task]

    @property
    def meta(self) -> dict[str, Any]:
        return self.model.meta[self.task]

    @property
    def base(self) -> Any:
        return self.model.base

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    @property
    def seq_width(self) -> int:
        return self.model.seq_width

    @property
    def adapts_text(self) -> bool:
        return self.model.adapts_text

    @property
    def frame_embed(self) -> Any:
        return self.model.frame_embed

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.encode_texts(texts)

    def frames_in_space(self, seq: torch.Tensor) -> torch.Tensor | None:
        return self.model.frames_in_space(seq)

    def parameters(self, recurse: bool = True):
        return self.model.parameters(recurse)


class MultiHead(VideoHead):
    """One head per task over the shared frame sequence; ``video(seq)`` gives every head's output."""

    def __init__(self, model: Any, meta: dict[str, Any], cfg: MultiConfig, head_cfg: HeadConfig, trainable: bool) -> None:
        super().__init__()
        configs = cfg.configs()
        self.heads = nn.ModuleDict({t: TASKS.get(t).head(TaskView(model, t, configs[t]), meta[t], configs[t], head_cfg,
                                                         trainable) for t in cfg.tasks})

    def video(self, seq: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: head.video(seq) for t, head in self.heads.items()}


def _by_task(rows: Sequence[dict[str, Any]], cfg: MultiConfig, where: str) -> dict[str, list[int]]:
    """Row positions of each task; a row naming no task of ``cfg.tasks`` is a DataError."""
    out: dict[str, list[int]] = {t: [] for t in cfg.tasks}
    for i, row in enumerate(rows):
        name = str(row.get(cfg.task_column, "") or "")
        if name not in out:
            raise DataError(where, f"row {i + 1} ({row.get('path', '?')}): {cfg.task_column}={name!r} is not one of "
                                   f"the tasks {list(cfg.tasks)}")
        out[name].append(i)
    return out


def _spread(value: Any, positions: list[int], n: int) -> Any:
    """A task's per-row targets (over its rows) placed at ``positions`` of ``n`` rows (zeros / None elsewhere)."""
    if isinstance(value, torch.Tensor):
        out = torch.zeros((n, *value.shape[1:]), dtype=value.dtype)
        out[torch.tensor(positions, dtype=torch.long)] = value
        return out
    out_list: list[Any] = [None] * n
    for p, v in zip(positions, value):
        out_list[p] = v
    return out_list


def select(batch: dict[str, Any], task: str, pos: torch.Tensor) -> dict[str, Any]:
    """The targets of ``task`` (keys ``task/...``, prefix removed) at rows ``pos`` of a batch."""
    prefix, idx = f"{task}/", pos.tolist()
    return {k[len(prefix):]: (v[pos] if isinstance(v, torch.Tensor) else [v[i] for i in idx])
            for k, v in batch.items() if k.startswith(prefix)}


def _views(model: Any, batch: dict[str, Any]):
    """(task, its view, row positions) of each task with rows in ``batch``."""
    cfg: MultiConfig = model.task_config
    configs = cfg.configs()
    for i, t in enumerate(cfg.tasks):
        pos = (batch["task"] == i).nonzero()[:, 0]
        if len(pos):
            yield t, TaskView(model, t, configs[t]), pos


def _scalars(metrics: dict[str, Any], task: str) -> dict[str, float]:
    return {f"{task}_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class MultiTask:
    """Registered as ``multi``: one strategy, one head per task, rows of several tasks in one manifest."""

    config_cls = MultiConfig
    paper = "unified multi-task paradigm (survey of image-to-video transfer); one shared strategy, a head per task"
    columns = ("task",)
    monitor = "val_score"
    baselines = ()  # compare --task multi runs each task alone beside it (see experiments/compare_multi.py)

    @property
    def report(self) -> tuple[str, ...]:
        """``score`` and every other registered task's headline metric, prefixed by its name."""
        return ("score", *(f"{t}_{TASKS.get(t).report[0]}" for t in TASKS.names() if t != NAME))

    def sampling(self, cfg: MultiConfig, spec: Any) -> Any:
        """The sampling of the task that asks for the most frames (one decoded clip set serves all)."""
        configs = cfg.configs()
        specs = [TASKS.get(t).sampling(configs[t], spec) for t in cfg.tasks]
        return max(specs, key=lambda s: s.num_frames)

    def meta(self, rows: Sequence[dict[str, Any]], cfg: MultiConfig) -> dict[str, Any]:
        groups, configs = _by_task(rows, cfg, "train rows"), cfg.configs()
        empty = [t for t, pos in groups.items() if not pos]
        if empty:
            raise DataError("train rows", f"no rows of task(s) {empty} (column {cfg.task_column!r})")
        return {t: TASKS.get(t).meta([rows[i] for i in pos], configs[t]) for t, pos in groups.items()}

    def targets(self, rows: Sequence[dict[str, Any]], meta: dict[str, Any], cfg: MultiConfig, where: str) -> dict[str, Any]:
        groups, configs = _by_task(rows, cfg, where), cfg.configs()
        task_of = torch.zeros(len(rows), dtype=torch.long)
        out: dict[str, Any] = {}
        for i, (t, pos) in enumerate(groups.items()):
            if not pos:
                continue
            task_of[pos] = i
            own = TASKS.get(t).targets([rows[p] for p in pos], meta[t], configs[t], f"{where} ({t} rows)")
            out.update({f"{t}/{k}": _spread(v, pos, len(rows)) for k, v in own.items()})
        return {"task": task_of, **out}

    def batch_groups(self, targets: dict[str, Any], cfg: MultiConfig) -> Groups | None:
        return Groups(targets["task"], balanced=cfg.sampling == "uniform")

    def head(self, model: Any, meta: dict[str, Any], cfg: MultiConfig, head_cfg: HeadConfig, trainable: bool) -> nn.Module:
        return MultiHead(model, meta, cfg, head_cfg, trainable)

    def loss(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        cfg: MultiConfig = model.task_config
        total, out = seq.new_zeros(()), {}
        for t, view, pos in _views(model, batch):
            value = TASKS.get(t).loss(view, seq[pos], select(batch, t, pos))["loss"]
            out[f"loss_{t}"] = value.detach()
            total = total + cfg.weights.get(t, 1.0) * value
        return {"loss": total, **out}

    def predict(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Each task's outputs for its rows of the batch, by task."""
        return {t: TASKS.get(t).predict(view, seq[pos], select(batch, t, pos)) for t, view, pos in _views(model, batch)}

    def metrics(self, model: Any, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        heads = []
        for t, view, pos in _views(model, batch):
            task = TASKS.get(t)
            out.update(_scalars(task.metrics(view, outputs[t], select(batch, t, pos)), t))
            heads.append(out[f"{t}_{task.report[0]}"])
        out["score"] = sum(heads) / len(heads)
        return out

    def space(self, model: Any) -> SharedSpace | str:
        """The space of the first of its tasks (in ``tasks`` order) whose head has one."""
        cfg: MultiConfig = model.task_config
        configs, reasons = cfg.configs(), []
        for t in cfg.tasks:
            found = TASKS.get(t).space(TaskView(model, t, configs[t]))
            if isinstance(found, SharedSpace):
                return found
            reasons.append(f"{t}: {found}")
        return "; ".join(reasons)


TASKS.register(NAME, MultiTask())
