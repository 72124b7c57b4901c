"""Saved transfers: only what the strategy and the task head add, plus a pointer to the base model.

A transfer folder holds ``transfer.json`` (strategy, task, their configs, what the head was built
for (``meta``: classes, ...), the base model's folder or hub name) and ``strategy.safetensors`` (the
parameters and buffers of :meth:`VideoModel.own_state`). :func:`load_transfer` loads the base (or
takes it), re-applies the strategy, re-attaches the task head and loads those weights. Nothing is
unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from xmodal.config import from_dict, to_dict
from xmodal.errors import CheckpointError
from xmodal.strategies.base import STRATEGIES, VideoModel
from xmodal.strategies.card import card_text, run_record, write_card
from xmodal.tasks.base import TASKS

TRANSFER_FORMAT = "xmodal-transfer"
FORMAT_VERSION = 2  # 2: tasks (version 1 had classification only)
META_FILE = "transfer.json"
STATE_FILE = "strategy.safetensors"


def save_transfer(vm: VideoModel, path: str | Path, base: str | Path, metrics: dict[str, Any] | None = None) -> Path:
    """Write ``transfer.json`` (with the run's ``metrics``, when given), the strategy's and head's own weights
    and a model card (``README.md``) to the folder ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous().clone() for k, v in vm.own_state().items()}
    save_file(state, str(path / STATE_FILE))
    meta = {"format": TRANSFER_FORMAT, "format_version": FORMAT_VERSION, "strategy": vm.strategy,
            "config": to_dict(vm.config), "task": vm.task, "task_config": to_dict(vm.task_config),
            "meta": vm.meta, "base": str(base), "frozen": vm.frozen, "metrics": metrics or {}}
    (path / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    load = f"import xmodal\nvm = xmodal.load_transfer({str(path)!r})  # a torch module: vm(pixels [B, T, 3, H, W])"
    write_card(path, card_text(json.loads((path / META_FILE).read_text()), f"xmodal transfer: {vm.strategy} for {vm.task}",
                               load, ["format: `xmodal-transfer` (needs xmodal; `xmodal export` writes other formats)"],
                               run_record(path)))
    return path


def is_transfer(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def read_transfer_meta(path: Path) -> dict[str, Any]:
    """``transfer.json`` of a transfer folder, checked; a CheckpointError says what is wrong."""
    if not is_transfer(path):
        raise CheckpointError(f"{path}: not a transfer checkpoint (no {META_FILE})")
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path / META_FILE}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != TRANSFER_FORMAT:
        raise CheckpointError(f"{path / META_FILE}: format is not {TRANSFER_FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path / META_FILE}: format_version {meta.get('format_version')} is not "
                              f"{FORMAT_VERSION} (re-run the transfer with this xmodal)")
    return meta


def build_transfer(model: Any, meta: dict[str, Any]) -> VideoModel:
    """Re-apply the strategy and re-attach the task head of a ``transfer.json`` to ``model``."""
    strategy, task = STRATEGIES.get(meta["strategy"]), TASKS.get(meta["task"])
    vm = strategy.apply(model, from_dict(strategy.config_cls, meta["config"]))
    tcfg = from_dict(task.config_cls, meta["task_config"])
    return vm.attach(meta["task"], tcfg, meta["meta"], task.head(vm, meta["meta"], tcfg, vm.head_config, vm.trains))


def load_transfer(path: str | Path, base: Any = None) -> VideoModel:
    """Rebuild a saved transfer: load its base (or use the given ``base`` model), re-apply the
    strategy with its saved config, re-attach the task head, load the saved weights."""
    from safetensors.torch import load_file

    from xmodal.api import load

    path = Path(path)
    meta = read_transfer_meta(path)
    ref = Path(meta["base"])
    ref = ref if ref.is_absolute() or not (path / ref).exists() else path / ref
    vm = build_transfer(base if base is not None else load(ref if ref.exists() else meta["base"]), meta)
    file = path / STATE_FILE
    try:
        state = load_file(str(file))
    except Exception as exc:  # safetensors raises several types for truncated files
        raise CheckpointError(f"{file}: unreadable weights ({exc})") from None
    own = vm.own_state()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{file}: weights do not match the strategy: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for key, value in state.items():
            if own[key].shape != value.shape:
                raise CheckpointError(f"{file}: {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
            own[key].copy_(value)
    return vm.eval()
