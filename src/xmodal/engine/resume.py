"""The run-folder side of :func:`xmodal.engine.fit.fit`: resuming, the log, checkpoints.

With a run folder, ``fit`` resumes from ``train_state`` (see :mod:`xmodal.engine.checkpoint`), cuts
``log.jsonl`` back to the bytes written with that state (so no epoch is logged twice), puts back the
data generators' states as they were when the interrupted epoch began, skips the batches that epoch
had already trained, and then puts back the global RNGs as they were at the checkpoint: a resumed
run trains on the same batches with the same random draws as an uninterrupted one.

Under torchrun every rank resumes from the same checkpoint, but only rank 0 writes the log and the
checkpoints; a checkpoint keeps every rank's RNG states (``rng["ranks"]``), and each rank puts back its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from xmodal.engine import distributed
from xmodal.engine.checkpoint import (History, TrainState, global_rng_state, has_train_state, load_train_state,
                                      save_train_state, set_global_rng_state)
from xmodal.engine.faults import kill_point
from xmodal.errors import CheckpointError


class Resumable:
    """Resume, log and checkpoint one ``fit`` in the run folder ``out`` (nothing is written when None).

    ``generators``: the named torch Generators the data draws from (shuffle, augmentation)."""

    def __init__(self, out: str | Path | None, model: nn.Module, optimizer: Any, scheduler: Any,
                 generators: dict[str, torch.Generator], verbose: bool = True) -> None:
        self.out = Path(out) if out is not None else None
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.generators, self.verbose = generators, verbose
        self.state = TrainState(history=History())  # the resumed state (its position and RNGs are used once)
        self.epoch_start: dict[str, Any] = {}  # RNG states at the start of the current epoch

    def resume(self, epochs: int) -> TrainState:
        """The state to continue a run of ``epochs`` epochs from (a fresh one without a run folder or checkpoint)."""
        if self.out is None:
            return self.state
        self.out.mkdir(parents=True, exist_ok=True)
        ckpt = self.out / "train_state"
        if has_train_state(ckpt):
            self.state = load_train_state(ckpt, self.model, self.optimizer, self.scheduler)
            self.state.rng = _own_rng(self.state.rng)
            self._say(epochs)
        elif (ckpt / "state.json").is_file():
            raise CheckpointError(f"{ckpt}: written by an older xmodal, cannot resume; delete it to start over")
        log = self.out / "log.jsonl"
        if distributed.is_main() and log.is_file() and log.stat().st_size > self.state.log_offset:
            with log.open("r+b") as fh:
                fh.truncate(self.state.log_offset)
        return self.state

    def _say(self, epochs: int) -> None:
        s = self.state
        if not self.verbose or not distributed.is_main():
            return
        if (s.history is not None and s.history.stopped_early) or s.epoch >= epochs:
            tqdm.write(f"{self.out}: training already finished ({s.epoch} epochs); nothing to train")
        else:
            tqdm.write(f"{self.out}: resuming after epoch {s.epoch}" + (f", batch {s.position}" if s.position else ""))

    def start_epoch(self) -> None:
        """Before the epoch's batches are drawn: put back the RNG states the resumed epoch began with."""
        start = self.state.rng.get("epoch_start")
        if start:
            for name, gen in self.generators.items():
                if name in start["generators"]:
                    gen.set_state(start["generators"][name])
            set_global_rng_state(start["global"])
        self.epoch_start = {"generators": {k: g.get_state() for k, g in self.generators.items()},
                            "global": global_rng_state()}

    def resumed(self) -> None:
        """After the resumed epoch's trained batches were skipped: the global RNGs of the checkpoint."""
        if self.state.rng.get("global"):
            set_global_rng_state(self.state.rng["global"])
        self.state.rng, self.state.position, self.state.partial = {}, 0, {}

    def checkpoint(self, epoch: int, position: int, partial: dict[str, float], history: History) -> None:
        """Commit the state after ``position`` batches of epoch ``epoch`` (0-based; position 0: its start)."""
        if self.out is None:
            return
        log = self.out / "log.jsonl"
        now = global_rng_state()
        start = self.epoch_start if position else {
            "generators": {k: g.get_state() for k, g in self.generators.items()}, "global": now}
        rng: dict[str, Any] = {"global": now, "epoch_start": start}
        if distributed.active():  # every rank's states, written by rank 0
            rng["ranks"] = distributed.gather_objects([rng])
        if not distributed.is_main():
            return
        state = TrainState(epoch=epoch, history=history, position=position, partial=partial,
                           log_offset=log.stat().st_size if log.is_file() else 0,
                           rng=rng, best_weights=self.state.best_weights)
        save_train_state(self.out / "train_state", self.model, self.optimizer, self.scheduler, state)

    def end_epoch(self, epoch: int, record: dict[str, float], history: History) -> None:
        """Log epoch ``epoch``'s record (flushed to disk), then checkpoint the start of the next one."""
        if self.out is None:
            return
        if distributed.is_main():
            with (self.out / "log.jsonl").open("a") as fh:
                fh.write(json.dumps(record) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            kill_point("log")
        self.checkpoint(epoch + 1, 0, {}, history)


def _own_rng(rng: dict[str, Any]) -> dict[str, Any]:
    """This rank's RNG states of a checkpoint's ``rng``: its own when the checkpoint kept every rank's
    and as many ranks resume it, else rank 0's (the global batches do not depend on the number of
    processes; only per-rank random draws, e.g. augmentation, then differ from an uninterrupted run)."""
    ranks = rng.get("ranks")
    if ranks is not None and len(ranks) == distributed.world():
        return ranks[distributed.rank()]
    return {k: v for k, v in rng.items() if k != "ranks"}
