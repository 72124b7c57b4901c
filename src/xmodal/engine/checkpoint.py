"""Resumable training state, committed atomically.

A checkpoint is a folder ``ckpt-<n>`` in the state folder holding the trainable weights and buffers
(safetensors), the optimizer, schedule and every RNG (``optim.pt``, loaded with
``torch.load(weights_only=True)``, which never unpickles code), the best weights when they are kept,
and ``state.json`` (epochs done, sampler position, log offset, history). Each file is fsynced, then
the one commit point: ``latest.json`` naming the folder is replaced atomically (``os.replace``).
A kill at any moment leaves ``latest.json`` naming a complete checkpoint (or none yet); folders it
does not name are leftovers and are removed at the next commit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xmodal.engine.faults import kill_point
from xmodal.errors import CheckpointError

POINTER = "latest.json"  # the commit point: names the current checkpoint folder


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
    position: int = 0  # batches of epoch ``epoch`` already trained (0 at an epoch boundary)
    partial: dict[str, float] = field(default_factory=dict)  # loss sum, batches, seconds of that unfinished epoch
    log_offset: int = 0  # bytes of log.jsonl written with this state (later bytes are cut on resume)
    rng: dict[str, Any] = field(default_factory=dict)  # "global": python/numpy/torch(/cuda) RNG states now;
    # "generators": the named generators' (data shuffle, augmentation) states at the start of epoch ``epoch``
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict)  # trainable weights of the best epoch
    extra: dict[str, Any] = field(default_factory=dict)  # anything else a caller keeps with the state


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that require grad plus all buffers (e.g. BatchNorm statistics)."""
    state = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    state.update({n: b.detach() for n, b in model.named_buffers()})
    return {k: v.contiguous().clone() for k, v in state.items()}


# ---------------------------------------------------------------- RNG states
def global_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global RNGs (and CUDA's when present)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Put back a :func:`global_rng_state`."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (call it before a model is built)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- save / load
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _current(path: Path) -> str | None:
    """The checkpoint folder name ``latest.json`` commits to, None when there is none."""
    pointer = path / POINTER
    if not pointer.is_file():
        return None
    try:
        return str(json.loads(pointer.read_text())["checkpoint"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{pointer}: unreadable ({exc}); delete {path} to start over") from None


def save_train_state(path: Path, model: nn.Module, optimizer, scheduler, state: TrainState) -> None:
    """Write ``state`` into a new checkpoint folder of ``path`` and commit it (see the module doc)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    current = _current(path)
    name = f"ckpt-{int(current.split('-')[-1]) + 1 if current else 1:06d}"
    folder = path / name
    if folder.exists():  # a leftover of a write that was killed before its commit
        shutil.rmtree(folder)
    folder.mkdir()
    save_file(trainable_state(model), str(folder / "weights.safetensors"))
    kill_point("checkpoint.weights")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": state.rng},
               folder / "optim.pt")
    kill_point("checkpoint.optimizer")
    if state.best_weights:
        save_file({k: v.contiguous() for k, v in state.best_weights.items()}, str(folder / "best.safetensors"))
    meta = {k: v for k, v in dataclasses.asdict(state).items() if k not in ("rng", "best_weights", "history")}
    meta["history"] = dataclasses.asdict(state.history) if state.history is not None else None
    (folder / "state.json").write_text(json.dumps(meta))
    for file in [*folder.iterdir(), folder]:
        _fsync(file)
    kill_point("checkpoint.written")
    _commit(path, name)
    kill_point("checkpoint.committed")
    for old in path.iterdir():
        if old.is_dir() and old.name != name:
            shutil.rmtree(old)


def _commit(path: Path, name: str) -> None:
    """Atomically point ``latest.json`` at the checkpoint folder ``name``."""
    tmp = path / (POINTER + ".tmp")
    with tmp.open("w") as fh:
        fh.write(json.dumps({"checkpoint": name}))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path / POINTER)
    _fsync(path)


def has_train_state(path: Path) -> bool:
    return (path / POINTER).is_file()


def load_train_state(path: Path, model: nn.Module, optimizer, scheduler) -> TrainState:
    """The committed state of ``path``, its weights, optimizer and schedule loaded into the given objects."""
    from safetensors.torch import load_file

    folder = path / str(_current(path))
    try:
        meta = json.loads((folder / "state.json").read_text())
        weights = load_file(str(folder / "weights.safetensors"))
        opt = torch.load(folder / "optim.pt", weights_only=True)
        best = load_file(str(folder / "best.safetensors")) if (folder / "best.safetensors").is_file() else {}
    except Exception as exc:  # noqa: BLE001 - any corruption is reported the same way
        raise CheckpointError(f"{folder}: cannot resume, training state unreadable ({exc}); delete it to start over") from None
    missing = set(trainable_state(model)) - set(weights)
    if missing:
        raise CheckpointError(f"{folder}: training state does not match the model (missing {sorted(missing)[:5]})")
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    history = History(**meta.pop("history")) if meta.get("history") else History()
    meta.pop("history", None)
    return TrainState(**meta, history=history, rng=opt.get("rng", {}), best_weights=best)
