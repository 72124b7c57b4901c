"""The one training loop every alignment and transfer strategy goes through.

``fit`` takes a ``step(batch) -> {"loss": Tensor, ...}`` function (the task), the parameters to train,
a data loader and an optional ``evaluate() -> {metric: float}``; every other scalar the step returns
(a diagnostic such as ``cos_audio``) is averaged over the epoch into its record. It does AdamW with linear warm-up and
cosine decay, gradient accumulation and clipping, mixed precision (``engine/precision.py``: bf16 autocast,
or fp16 with a loss scaler), early stopping on a monitored
metric, a JSON-lines log, and atomic checkpoints of the complete training state (after every epoch and
every ``checkpoint_every`` batches, see ``engine/resume.py``) from which a killed run resumes to the
same weights as an uninterrupted one. Under torchrun (``engine/distributed.py``) each rank trains on its
slice of every global batch through DistributedDataParallel, and only rank 0 prints, logs and writes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from xmodal.engine import distributed
from xmodal.engine.checkpoint import History
from xmodal.engine.faults import kill_point
from xmodal.engine.precision import Precision, resolve_precision
from xmodal.engine.progress import progress as progress_bar
from xmodal.engine.resume import Resumable


@dataclass
class FitConfig:
    epochs: int = 10  # passes over the training data
    lr: float = 1e-3  # peak learning rate of AdamW
    weight_decay: float = 0.05  # AdamW weight decay (not applied to biases and norms)
    warmup_ratio: float = 0.05  # fraction of steps with linear warm-up before cosine decay
    grad_accum: int = 1  # gradient accumulation: batches per optimizer step (each loss divided by the batches of its
    # step, so accumulating k batches of B rows steps like one batch of k*B; the schedule counts optimizer steps)
    max_grad_norm: float = 1.0  # gradient clipping; 0 disables
    patience: int = 0  # stop after this many epochs without a better monitored metric; 0 = never
    monitor: str = ""  # metric from evaluate() that early stopping watches (higher is better)
    precision: str = "fp32"  # fp32|auto|bf16|fp16 autocast of the training step (auto: fastest safe one for
    # the device, see engine/precision.py; fp32 by default: the same numbers on every machine; weights and
    # optimizer state stay fp32)
    progress: bool = True  # progress bars (shown only on a terminal; XMODAL_PROGRESS=0/1 forces)
    verbose: bool = True  # print one summary line per epoch (loss, validation metrics, seconds)
    restore_best: bool = False  # at the end, put back the trainable weights of the best monitored epoch
    max_minutes: float = 0.0  # stop after the epoch that takes training past this many minutes; 0 = no budget
    budget_schedule: bool = False  # with max_minutes: once the first epoch's time is known, the run lasts the epochs
    # the budget allows at that pace (at most ``epochs``) and the warm-up + cosine schedule spans them, so a run ends
    # annealed instead of being cut at a high rate (budgeted training, Li et al., ICLR 2020)
    lr_scales: dict[str, float] = field(default_factory=dict)  # parameter-name prefix -> lr multiplier
    # (first match wins), e.g. {"base.": 0.1}: a pretrained backbone moves gently under a fresh head
    checkpoint_every: int = 0  # also checkpoint every this many batches within an epoch; 0 = at epoch ends only


def param_groups(params: Iterable[tuple[str, nn.Parameter]], weight_decay: float, lr: float | None = None,
                 lr_scales: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices, none on biases, norms, scalars and embeddings of one row; with
    ``lr``, each group's learning rate is ``lr`` times the ``lr_scales`` entry of the first matching
    name prefix (1 when none matches)."""
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in params:
        if p.requires_grad:
            scale = next((v for k, v in (lr_scales or {}).items() if name.startswith(k)), 1.0)
            groups.setdefault((p.ndim >= 2 and "norm" not in name, scale), []).append(p)
    out = []
    for (decay, scale), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1])):
        group: dict[str, Any] = {"params": ps, "weight_decay": weight_decay if decay else 0.0}
        if lr is not None:
            group["lr"] = lr * scale
        out.append(group)
    return out


def cosine_schedule(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at step ``total``; both may be changed
    later through the factor's ``span`` (:func:`budget_epochs`; not in the scheduler's state: a resumed run
    recomputes it)."""
    span = {"total": total, "warmup": warmup}

    def factor(step: int) -> float:
        if step < span["warmup"]:
            return (step + 1) / max(1, span["warmup"])
        progress = (step - span["warmup"]) / max(1, span["total"] - span["warmup"])
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    factor.span = span  # type: ignore[attr-defined]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def steps_per_epoch(batches: int, cfg: FitConfig) -> int:
    """Optimizer steps in an epoch of ``batches`` batches (``cfg.grad_accum`` batches per step, the last may be short)."""
    return max(1, math.ceil(batches / cfg.grad_accum))


def budget_epochs(cfg: FitConfig, history: History, scheduler: Any, steps: int) -> int:
    """The epochs this run lasts: ``cfg.epochs``, or with ``budget_schedule`` and a budget, as many as fit in
    it at the first epoch's pace (from its record, so a resumed run plans the same), the schedule then
    spanning them (``steps`` optimizer steps per epoch)."""
    if not (cfg.budget_schedule and cfg.max_minutes > 0 and history.epochs):
        return cfg.epochs
    pace = max(1e-9, float(history.epochs[0]["train_seconds"]))
    epochs = max(1, min(cfg.epochs, int(60 * cfg.max_minutes // pace)))
    total = steps * epochs
    scheduler.lr_lambdas[0].span.update(total=total, warmup=int(cfg.warmup_ratio * total))
    return epochs


def fit(
    step: Callable[[Any], dict[str, torch.Tensor]],
    model: nn.Module,
    loader: Iterable[Any],
    cfg: FitConfig,
    evaluate: Callable[[], dict[str, float]] | None = None,
    out: str | Path | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    generators: dict[str, torch.Generator] | None = None,
) -> History:
    """Train the parameters of ``model`` that require grad. With ``out``, the complete state (weights,
    optimizer, schedule, every RNG, sampler position, log offset) is committed atomically to
    ``out/train_state`` after every epoch (and every ``cfg.checkpoint_every`` batches), and a later call
    with the same ``out`` resumes where it stopped, ending on the same weights as an uninterrupted run.
    ``on_epoch_end(record)`` sees each finished epoch's record (after its evaluation); ``generators``:
    the named torch Generators the loader draws from (shuffle, augmentation)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("fit: the model has no trainable parameters")
    loader = distributed.shard_loader(loader)  # this rank's slice of each global batch (the loader alone)
    optimizer, scheduler = _optimizer(named, len(loader), cfg)  # type: ignore[arg-type]
    run = Resumable(out, model, optimizer, scheduler, dict(generators or {}), cfg.verbose)
    replica = distributed.Replica(model, step)
    precision = resolve_precision(cfg.precision, next(model.parameters()).device)
    history = run.resume(cfg.epochs).history or History()
    steps = steps_per_epoch(len(loader), cfg)  # type: ignore[arg-type]
    for epoch in range(run.state.epoch, cfg.epochs):
        if history.stopped_early or epoch >= budget_epochs(cfg, history, scheduler, steps):
            break
        if on_epoch_start:
            on_epoch_start(epoch)
        with precision.training(model):
            record = _train_epoch(replica, model, loader, optimizer, scheduler, precision, cfg, epoch, run, history)
        history.train_seconds += record["train_seconds"]
        record.update(evaluate() if evaluate is not None else {})
        history.epochs.append(record)
        if cfg.verbose and distributed.is_main():
            tqdm.write(_summary(record, cfg.epochs))
        if on_epoch_end:
            on_epoch_end(record)
        over_time = distributed.agree(0 < 60 * cfg.max_minutes <= history.train_seconds)  # rank 0's clock decides
        history.stopped_early = _update_best(history, record, cfg) or over_time
        if cfg.restore_best and history.best is record:
            run.state.best_weights = {n: p.detach().clone() for n, p in named}
        run.end_epoch(epoch, record, history)
    kill_point("trained")
    _restore(named, run.state.best_weights)
    return history


def _optimizer(named: list[tuple[str, nn.Parameter]], batches: int, cfg: FitConfig
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``named`` and its warm-up + cosine schedule for ``cfg.epochs`` epochs of ``batches``.
    The fused AdamW kernel when every parameter is a CPU or CUDA float tensor (one pass over each parameter
    instead of a dozen: on a CPU, a full ViT-B/32 step's update 6x faster than the foreach one)."""
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for _, p in named) or None
    optimizer = torch.optim.AdamW(param_groups(named, cfg.weight_decay, cfg.lr, cfg.lr_scales), lr=cfg.lr,
                                  fused=fused)
    total = steps_per_epoch(batches, cfg) * cfg.epochs  # see budget_epochs for a budgeted run
    return optimizer, cosine_schedule(optimizer, total, int(cfg.warmup_ratio * total))


def _restore(named: list[tuple[str, nn.Parameter]], weights: dict[str, torch.Tensor]) -> None:
    """Copy saved ``weights`` back into the parameters (no-op when empty)."""
    with torch.no_grad():
        for n, p in named:
            if n in weights:
                p.copy_(weights[n])


def _summary(record: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(record['epoch'])}/{epochs}"]
    for key, value in record.items():
        if key == "epoch":
            continue
        parts.append(f"{key} {value:.1f}s" if key.endswith("seconds") else f"{key} {value:.4g}")
    return "  ".join(parts)


def _update_best(history: History, record: dict[str, float], cfg: FitConfig) -> bool:
    """Track the best record; True when early stopping should end training."""
    key = cfg.monitor
    if not key or key not in record:
        history.best = record
        return False
    if not history.best or record[key] > history.best.get(key, -math.inf):
        history.best = record
    if cfg.patience <= 0:
        return False
    best_epoch = int(history.best["epoch"])
    return int(record["epoch"]) - best_epoch >= cfg.patience


def freeze_eval(model: nn.Module) -> None:
    """Put every submodule whose parameters are all frozen in eval mode (no dropout, fixed norms)."""
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()


def _train_epoch(replica: distributed.Replica, model, loader, optimizer, scheduler, precision: Precision,
                 cfg: FitConfig, epoch: int, run: Resumable, history: History) -> dict[str, float]:
    """One epoch (of which a resumed run skips the batches its checkpoint had trained); its record."""
    model.train()
    freeze_eval(model)
    scaler = precision.scaler()
    position, partial = run.state.position, run.state.partial
    total, count = partial.get("loss_sum", 0.0), int(partial.get("batches", 0))
    start = time.perf_counter() - partial.get("seconds", 0.0)
    run.start_epoch()
    extras: dict[str, list[float]] = {}  # the other scalars the step returns: [sum, batches that had it]
    bar = progress_bar(loader, cfg.progress and distributed.is_main(), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       leave=False)
    batches = enumerate(bar)
    for _ in range(position):
        next(batches)
    run.resumed()
    optimizer.zero_grad(set_to_none=True)
    for i, batch in batches:
        if distributed.any_rank(batch is None):  # every sample of the batch (of a rank's slice) was unreadable
            continue
        stepping = (i + 1) % cfg.grad_accum == 0 or i + 1 == len(loader)
        out = _forward_backward(replica, batch, precision, scaler, _group(i, cfg.grad_accum, len(loader)),
                                stepping)
        total += distributed.average(float(out["loss"].detach()))  # the ranks' mean: the global batch's loss
        count += 1
        _add_scalars(extras, out)
        if stepping:
            _optimizer_step(optimizer, scheduler, cfg, scaler)
            kill_point("step")
            if cfg.checkpoint_every > 0 and (i + 1) % cfg.checkpoint_every == 0 and i + 1 < len(loader):
                partial = {"loss_sum": total, "batches": count, "seconds": time.perf_counter() - start}
                run.checkpoint(epoch, i + 1, partial, history)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return {"epoch": epoch + 1, "loss": total / max(1, count), **{k: s / n for k, (s, n) in extras.items()},
            "lr": scheduler.get_last_lr()[0], "train_seconds": time.perf_counter() - start}


def _forward_backward(replica: distributed.Replica, batch: Any, precision: Any, scaler: torch.amp.GradScaler,
                      group: int, stepping: bool) -> dict[str, Any]:
    """The step's output on ``batch`` after its (accumulated) backward; under torchrun the gradients are
    averaged over the ranks at the backward of the batch an optimizer step follows (``stepping``); the
    loss is divided by ``group``, the batches of its optimizer step."""
    with replica.accumulating(not stepping):
        with precision.train_autocast():
            out = replica.step(batch)
        scaler.scale(out["loss"] / group).backward()
    return out


def _group(i: int, accum: int, batches: int) -> int:
    """Batches in the optimizer step of batch ``i`` (``accum``; fewer for the last step of an epoch)."""
    return min(accum, batches - i // accum * accum)


def _optimizer_step(optimizer: torch.optim.Optimizer, scheduler: Any, cfg: FitConfig,
                    scaler: torch.amp.GradScaler) -> None:
    """Clip the summed (unscaled) gradients, step the optimizer (skipped by an fp16 scaler on overflow)
    and the schedule, clear the gradients."""
    scaler.unscale_(optimizer)
    if cfg.max_grad_norm > 0:
        nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _add_scalars(sums: dict[str, list[float]], out: dict[str, Any]) -> None:
    """Add each scalar of a step's output but its loss (a float or a one-element tensor) to ``sums``."""
    for key, value in out.items():
        if key != "loss" and (isinstance(value, float) or (isinstance(value, torch.Tensor) and value.numel() == 1)):
            entry = sums.setdefault(key, [0.0, 0])
            entry[0] += float(value)
            entry[1] += 1


@torch.no_grad()
def precise_batchnorm(module: nn.Module, batches: Iterable[Any], forward: Callable[[Any], Any]) -> int:
    """Recompute the running statistics of ``module``'s BatchNorm layers as exact averages over
    ``batches`` (``forward(batch)`` runs the module; "precise BN", Wu & Johnson 2021). After few
    optimizer steps the running averages still lag the weights, and eval-mode outputs drift from
    training's (at worst, every input maps to one point). Returns the number of layers recomputed."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    modes = {m: m.training for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    for batch in batches:
        if batch is not None:
            forward(batch)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        m.train(modes[m])
    return len(norms)
