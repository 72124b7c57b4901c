"""Resumable training state: trainable weights + buffers (safetensors), optimizer and schedule.

Written to a temporary folder and renamed, so a kill mid-write leaves the previous state intact.
Optimizer state is loaded with ``torch.load(weights_only=True)``, which never unpickles code.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xmodal.errors import CheckpointError


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)  # one record per finished epoch
    best: dict[str, float] = field(default_factory=dict)  # the record with the best monitored metric
    train_seconds: float = 0.0  # wall time spent in training steps (evaluation excluded)
    stopped_early: bool = False  # True when early stopping or the time budget ended training


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    history: History | None = None  # the run's records so far
    extra: dict[str, Any] = field(default_factory=dict)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that require grad plus all buffers (e.g. BatchNorm statistics)."""
    state = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    state.update({n: b.detach() for n, b in model.named_buffers()})
    return {k: v.contiguous().clone() for k, v in state.items()}


def save_train_state(path: Path, model: nn.Module, optimizer, scheduler, state: TrainState) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), str(tmp / "weights.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
    history = dataclasses.asdict(state.history) if state.history is not None else None
    (tmp / "state.json").write_text(json.dumps({"epoch": state.epoch, "history": history, "extra": state.extra}))
    old = path.with_name(path.name + ".old")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    if old.exists():
        shutil.rmtree(old)


def load_train_state(path: Path, model: nn.Module, optimizer, scheduler) -> TrainState:
    from safetensors.torch import load_file

    try:
        meta = json.loads((path / "state.json").read_text())
        weights = load_file(str(path / "weights.safetensors"))
        opt = torch.load(path / "optim.pt", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any corruption is reported the same way
        raise CheckpointError(f"{path}: cannot resume, training state unreadable ({exc}); delete it to start over") from None
    missing = set(trainable_state(model)) - set(weights)
    if missing:
        raise CheckpointError(f"{path}: training state does not match the model (missing {sorted(missing)[:5]})")
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    history = History(**meta["history"]) if meta.get("history") else History()
    return TrainState(epoch=int(meta["epoch"]), history=history, extra=meta.get("extra", {}))
