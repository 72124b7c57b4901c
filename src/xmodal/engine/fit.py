"""The one training loop every alignment and transfer strategy goes through.

``fit`` takes a ``step(batch) -> {"loss": Tensor, ...}`` function (the task), the parameters to train,
a data loader and an optional ``evaluate() -> {metric: float}``. It does AdamW with linear warm-up and
cosine decay, gradient accumulation and clipping, bf16 autocast on CUDA, early stopping on a monitored
metric, a JSON-lines log, and a checkpoint after every epoch from which a killed run resumes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from xmodal.engine.checkpoint import History, TrainState, load_train_state, save_train_state


@dataclass
class FitConfig:
    epochs: int = 10  # passes over the training data
    lr: float = 1e-3  # peak learning rate of AdamW
    weight_decay: float = 0.05  # AdamW weight decay (not applied to biases and norms)
    warmup_ratio: float = 0.05  # fraction of steps with linear warm-up before cosine decay
    grad_accum: int = 1  # batches whose gradients are summed before one optimizer step
    max_grad_norm: float = 1.0  # gradient clipping; 0 disables
    patience: int = 0  # stop after this many epochs without a better monitored metric; 0 = never
    monitor: str = ""  # metric from evaluate() that early stopping watches (higher is better)
    amp: bool = True  # bf16 autocast when training on CUDA (ignored on CPU)
    progress: bool = True  # tqdm progress bars
    verbose: bool = True  # print one summary line per epoch (loss, validation metrics, seconds)
    restore_best: bool = False  # at the end, put back the trainable weights of the best monitored epoch
    max_minutes: float = 0.0  # stop after the epoch that takes training past this many minutes; 0 = no budget
    lr_scales: dict[str, float] = field(default_factory=dict)  # parameter-name prefix -> lr multiplier
    # (first match wins), e.g. {"base.": 0.1}: a pretrained backbone moves gently under a fresh head


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
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(
    step: Callable[[Any], dict[str, torch.Tensor]],
    model: nn.Module,
    loader: Iterable[Any],
    cfg: FitConfig,
    evaluate: Callable[[], dict[str, float]] | None = None,
    out: str | Path | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
) -> History:
    """Train the parameters of ``model`` that require grad. With ``out``, the state is checkpointed
    to ``out/train_state`` after every epoch and a later call with the same ``out`` resumes."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("fit: the model has no trainable parameters")
    optimizer = torch.optim.AdamW(param_groups(named, cfg.weight_decay, cfg.lr, cfg.lr_scales), lr=cfg.lr)
    steps_per_epoch = max(1, math.ceil(len(loader) / cfg.grad_accum))  # type: ignore[arg-type]
    total = steps_per_epoch * cfg.epochs
    scheduler = cosine_schedule(optimizer, total, int(cfg.warmup_ratio * total))
    state = TrainState(history=History())
    ckpt = Path(out) / "train_state" if out else None
    if ckpt is not None and (ckpt / "state.json").exists():
        state = load_train_state(ckpt, model, optimizer, scheduler)
    log = Path(out) / "log.jsonl" if out else None
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
    history = state.history
    best_weights: dict[str, torch.Tensor] = {}
    for epoch in range(state.epoch, cfg.epochs):
        if on_epoch_start:
            on_epoch_start(epoch)
        record = _train_epoch(step, model, loader, optimizer, scheduler, cfg, epoch)
        history.train_seconds += record["train_seconds"]
        if evaluate is not None:
            record.update(evaluate())
        history.epochs.append(record)
        if cfg.verbose:
            tqdm.write(_summary(record, cfg.epochs))
        stop = _update_best(history, record, cfg)
        if cfg.restore_best and history.best is record:
            best_weights = {n: p.detach().clone() for n, p in named}
        if cfg.max_minutes > 0 and history.train_seconds >= 60 * cfg.max_minutes:
            stop = True
        _append_log(log, record)
        if ckpt is not None:
            save_train_state(ckpt, model, optimizer, scheduler, TrainState(epoch=epoch + 1, history=history))
        if stop:
            history.stopped_early = True
            break
    _restore(named, best_weights)
    return history


def _append_log(log: Path | None, record: dict[str, float]) -> None:
    """Append ``record`` as one JSON line to ``log`` (nothing without a log)."""
    if log is not None:
        with log.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


def _restore(named: list[tuple[str, nn.Parameter]], best_weights: dict[str, torch.Tensor]) -> None:
    """Copy the best epoch's weights back (nothing when none were kept)."""
    if best_weights:
        with torch.no_grad():
            for n, p in named:
                p.copy_(best_weights[n])


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


def _train_epoch(step, model, loader, optimizer, scheduler, cfg: FitConfig, epoch: int) -> dict[str, float]:
    model.train()
    freeze_eval(model)
    device = next(model.parameters()).device
    use_amp = cfg.amp and device.type == "cuda"
    total, count, start = 0.0, 0, time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress, leave=False)
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(bar):
        if batch is None:  # every sample of the batch was skipped as unreadable
            continue
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = step(batch)
        (out["loss"] / cfg.grad_accum).backward()
        if (i + 1) % cfg.grad_accum == 0 or i + 1 == len(loader):
            if cfg.max_grad_norm > 0:
                nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        total += float(out["loss"].detach())
        count += 1
        bar.set_postfix(loss=f"{total / count:.4f}")
    return {"epoch": epoch + 1, "loss": total / max(1, count), "lr": scheduler.get_last_lr()[0],
            "train_seconds": time.perf_counter() - start}
