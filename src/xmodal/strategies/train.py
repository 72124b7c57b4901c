"""Transfer an aligned model to a video task with one strategy, on the one engine.

``transfer(model, train_rows, TransferConfig(task="retrieve", strategy="lora"), val_rows, test_rows,
root, out)``:

1. validates the task, the strategy and both option sets before anything is decoded;
2. decodes every distinct clip once (``strategies/data.py``), frames sampled as the task asks, and
   builds the task's targets (classes, captions, moments, ...);
3. applies the strategy (wrap / inject) and attaches the task's head: a :class:`VideoModel`;
4. if the strategy leaves the backbone frozen (``strategy.frozen``; nothing for the user to set),
   runs the backbone once per clip and trains on the cached outputs, else re-encodes every batch.
   With a feature store (``TransferConfig.feature_store``) a frozen run is out of core: step 2 then
   comes after step 3 and decodes only the clips whose features are not stored yet, a batch at a time,
   never holding a split's pixels (``strategies/features.py``); training reads the memory-mapped store;
5. trains with :func:`xmodal.engine.fit.fit` (AdamW, cosine schedule, accumulation, AMP on CUDA,
   early stopping on the task's validation metric, best weights restored, checkpoints with resume,
   log.jsonl);
6. measures the task's metrics and efficiency (parameters, train time, peak memory, clips/s, FLOPs
   per clip) on the test rows;
7. with ``out``, saves ``out/model`` (only what the strategy and the head add + a pointer to the base).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from xmodal.config import from_dict
from xmodal.engine import distributed
from xmodal.engine.fit import FitConfig, History, fit
from xmodal.errors import ConfigError
from xmodal.strategies.base import STRATEGIES, VideoModel
from xmodal.strategies.checkpoint import save_transfer
from xmodal.strategies.data import ClipSet, GroupedBatches, Loading, load_split
from xmodal.strategies.features import store_folder, stored_inputs, stored_split
from xmodal.engine.cache import to_device
from xmodal.tasks.base import TASKS, take

DEFAULT_LR = 3e-3  # heads, adapters, LoRA, prompts; strategies that unfreeze backbone weights scale it
# for those weights with ``backbone_lr_scale``


@dataclass
class TransferConfig:
    task: str = "classify"  # registered task (xmodal.tasks.TASKS): classify, retrieve, ground, qa
    task_options: dict[str, Any] = field(default_factory=dict)  # the task's config fields, e.g. {"label_column": "y"}
    strategy: str = "temporal_head"  # registered strategy name (see xmodal.strategies.STRATEGIES)
    options: dict[str, Any] = field(default_factory=dict)  # the strategy's config fields, e.g. {"rank": 8}
    path_column: str = "path"  # manifest column with the video files
    batch_size: int = 32  # rows per batch (under torchrun the global batch, split over the processes)
    lr: float = 0.0  # peak learning rate; 0 = the strategy's ``default_lr`` (LoRA), else fit.lr
    num_workers: int = 0  # DataLoader worker processes for decoding
    feature_store: str = "auto"  # where frozen strategies keep clip features, reused across runs: "auto" =
    # $XMODAL_FEATURE_STORE or ~/.cache/xmodal/features, a folder, or "" = in memory for this run only
    on_error: str = "raise"  # unreadable clip: "raise" or "skip" (counted, listed)
    seed: int = 0  # seeds initialisation and shuffling
    fit: FitConfig = field(default_factory=lambda: FitConfig(
        epochs=60, lr=DEFAULT_LR, monitor="", patience=20, restore_best=True, weight_decay=0.01,
        max_minutes=1.0))  # engine (``monitor`` "" = the task's); the per-run budget keeps a compare within minutes


@dataclass
class TransferResult:
    model: VideoModel  # the trained model (base + strategy + task head)
    metrics: dict[str, Any]  # the task's figures and efficiency figures on the test rows
    history: History  # the engine's per-epoch records


def check(cfg: TransferConfig) -> tuple[Any, Any, Any, Any]:
    """``(task, task config, strategy, strategy config)``; unknown names or options are ConfigErrors
    (raised before any data is read)."""
    if cfg.on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error {cfg.on_error!r} is not 'raise' or 'skip'")
    task, strategy = TASKS.get(cfg.task), STRATEGIES.get(cfg.strategy)
    tcfg = from_dict(task.config_cls, dict(cfg.task_options), where=f"{cfg.task} task options")
    scfg = from_dict(strategy.config_cls, dict(cfg.options), where=f"{cfg.strategy} options")
    return task, tcfg, strategy, scfg


def build(model: Any, cfg: TransferConfig, meta: dict[str, Any]) -> VideoModel:
    """Apply ``cfg.strategy`` to ``model`` and attach ``cfg.task``'s head built for ``meta``."""
    task, tcfg, strategy, scfg = check(cfg)
    torch.manual_seed(cfg.seed)
    vm = strategy.apply(model, scfg)
    return vm.attach(cfg.task, tcfg, meta, task.head(vm, meta, tcfg, vm.head_config, vm.trains))


def clip_inputs(vm: VideoModel, clips: ClipSet, batch_size: int, store: str = "") -> dict[str, Any]:
    """What the engine feeds per distinct clip: a frozen strategy's cache (computed once; on disk in
    the feature store ``store`` names, see ``TransferConfig.feature_store``), else pixels. Each value
    is indexed by clip (``v[clip_indices]``)."""
    return frozen_inputs(vm, clips, batch_size, store)[0]


def frozen_inputs(vm: VideoModel, clips: ClipSet, batch_size: int, store: str = "") -> tuple[dict[str, Any], int]:
    """:func:`clip_inputs` and how many clips went through the frozen backbone for them (0 when every
    clip's features were in the store already, or were encoded while its split was loaded)."""
    if clips.stored is not None:  # loaded out of core (``stored_split``): counted there
        return clips.stored.inputs, 0
    if not vm.frozen:
        return {"pixel_values": clips.pixels}, 0
    folder = store_folder(store)
    if folder is not None:
        return stored_inputs(vm, clips, batch_size, folder)
    return _memory_inputs(vm, clips, batch_size), len(clips.pixels)


@torch.no_grad()
def _memory_inputs(vm: VideoModel, clips: ClipSet, batch_size: int) -> dict[str, torch.Tensor]:
    """A frozen strategy's cache of every distinct clip, computed now and kept in memory."""
    vm.eval()
    device = next(vm.parameters()).device
    parts = [vm.inputs(clips.pixels[i : i + batch_size].to(device)) for i in range(0, len(clips.pixels), batch_size)]
    return {k: torch.cat([p[k].cpu() if k == "pixel_values" else p[k].float().cpu() for p in parts]) for k in parts[0]}


def _rows_batch(vm: VideoModel, clips: ClipSet, inputs: dict[str, torch.Tensor], idx: torch.Tensor
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, Any]]:
    """The inputs of the distinct clips of rows ``idx``, each row's position among them, and the rows'
    task targets, on the model's device (rows sharing a clip run it through the model once)."""
    device = next(vm.parameters()).device
    clip, where = clips.clip[idx].unique(return_inverse=True)
    batch_in = {k: v[clip].to(device) for k, v in inputs.items()}
    return batch_in, where.to(device), to_device(take(clips.targets, idx), device)


@torch.no_grad()
def predict(vm: VideoModel, clips: ClipSet, inputs: dict[str, torch.Tensor], batch_size: int = 64) -> Any:
    """The task's outputs for every row of ``clips`` (logits, embeddings, spans, token ids, or a dict of
    them per key), see :func:`gather`."""
    vm.eval()
    task = TASKS.get(vm.task)
    out = []
    for start in range(0, len(clips), batch_size):
        batch_in, where, targets = _rows_batch(vm, clips, inputs, torch.arange(start, min(start + batch_size, len(clips))))
        out.append(task.predict(vm, vm.sequence(batch_in)[where], targets))
    return gather(out)


def gather(parts: Sequence[Any]) -> Any:
    """Per-batch outputs joined in row order, on the CPU: tensors concatenated (floating point as float32,
    integer ids kept), dicts joined key by key (a key may be absent from some batches)."""
    if isinstance(parts[0], dict):
        keys = list(dict.fromkeys(k for p in parts for k in p))
        return {k: gather([p[k] for p in parts if k in p]) for k in keys}
    return torch.cat([p.float().cpu() if p.is_floating_point() else p.cpu() for p in parts])


def evaluate(vm: VideoModel, clips: ClipSet, inputs: dict[str, Any] | None = None,
             batch_size: int = 64) -> dict[str, Any]:
    """The task's metrics on ``clips`` (``inputs``: their clip inputs, computed in memory when None)."""
    inputs = clip_inputs(vm, clips, batch_size) if inputs is None else inputs
    outputs = predict(vm, clips, inputs, batch_size)
    return TASKS.get(vm.task).metrics(vm, outputs, clips.targets)


def training_step(vm: VideoModel, clips: ClipSet, inputs: dict[str, torch.Tensor]):
    """The engine's ``step(rows) -> {"loss": ...}``: the task's loss (+ the strategy's auxiliary loss) on rows of
    ``clips``; under torchrun weighed by this rank's share of the global batch (``distributed.rows_weight``)."""
    task = TASKS.get(vm.task)

    def step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        batch_in, where, targets = _rows_batch(vm, clips, inputs, idx)
        seq = vm.sequence(batch_in)
        out = task.loss(vm, seq[where], targets)
        if vm.aux_loss is not None:
            aux = vm.aux_loss(vm, batch_in, seq)
            out = {**out, **{k: v for k, v in aux.items() if k != "loss"}, "loss": out["loss"] + aux["loss"]}
        return {**out, "loss": out["loss"] * distributed.rows_weight(len(idx))} if distributed.active() else out

    return step


def train(vm: VideoModel, train_clips: ClipSet, val_clips: ClipSet | None, cfg: TransferConfig,
          out: Path | None = None) -> tuple[History, dict[str, float]]:
    """Train ``vm`` on the engine; returns the history and ``{"cache_seconds": seconds spent caching
    (or reading the store's index), "features_encoded": clips the frozen backbone encoded}``."""
    t0 = time.perf_counter()
    inputs, encoded = frozen_inputs(vm, train_clips, cfg.batch_size, cfg.feature_store)
    val, val_encoded = frozen_inputs(vm, val_clips, cfg.batch_size, cfg.feature_store) if val_clips is not None else (None, 0)
    loaded = [c.stored for c in (train_clips, val_clips) if c is not None and c.stored is not None]
    cache = {"cache_seconds": time.perf_counter() - t0 + sum(s.seconds for s in loaded) if vm.frozen else 0.0,
             "features_encoded": encoded + val_encoded + sum(s.encoded for s in loaded) if vm.frozen else 0}
    if not any(p.requires_grad for p in vm.parameters()):
        return History(), cache
    loader, generator = _loader(vm, train_clips, cfg)

    def validate() -> dict[str, float]:
        metrics = evaluate(vm, val_clips, val, cfg.batch_size)
        return {f"val_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}

    history = fit(training_step(vm, train_clips, inputs), vm, loader, fit_config(cfg, vm),
                  evaluate=validate if val is not None else None, out=out / "train" if out is not None else None,
                  generators={"shuffle": generator})
    return history, cache


def _loader(vm: VideoModel, clips: ClipSet, cfg: TransferConfig) -> tuple[Any, torch.Generator]:
    """Shuffled training batches of row indices (of one group each when the task asks, see ``batch_groups``)
    and the generator that shuffles them."""
    generator = torch.Generator().manual_seed(cfg.seed)
    groups = TASKS.get(vm.task).batch_groups(clips.targets, vm.task_config)
    if groups is None:
        return DataLoader(range(len(clips)), batch_size=cfg.batch_size, shuffle=True, generator=generator), generator
    return GroupedBatches(groups.ids, cfg.batch_size, generator, groups.balanced), generator


def fit_config(cfg: TransferConfig, vm: VideoModel) -> FitConfig:
    """The engine settings of a run: ``cfg.lr`` (else the strategy's ``default_lr``, else ``cfg.fit.lr``)
    for what the strategy adds, scaled by the strategy's ``backbone_lr_scale`` for the base weights it
    unfreezes (full / partial tuning: a pretrained backbone moves gently under a freshly initialised
    head); early stopping watches the task's validation metric unless ``cfg.fit.monitor`` names one."""
    scales = dict(cfg.fit.lr_scales)
    scales.setdefault("base.", vm.backbone_lr_scale)
    lr = cfg.lr if cfg.lr > 0 else (vm.default_lr if vm.default_lr is not None else cfg.fit.lr)
    monitor = cfg.fit.monitor or TASKS.get(vm.task).monitor
    return dataclasses.replace(cfg.fit, lr=lr, lr_scales=scales, monitor=monitor)


def split_rows(rows: Sequence[dict[str, Any]], label_column: str = "", every: int = 5
               ) -> dict[str, list[dict[str, Any]]]:
    """Train/val/test rows: by the ``split`` column when rows have one, else deterministically (every
    ``every``-th row to test, the one before it to val, the rest to train; counted per value of
    ``label_column`` when it names a column, so that each class is split alike)."""
    if rows and "split" in rows[0]:
        return {s: [r for r in rows if r.get("split") == s] for s in ("train", "val", "test")}
    out: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    seen: dict[Any, int] = {}
    for r in rows:
        key = r.get(label_column) if label_column else None
        k = seen[key] = seen.get(key, -1) + 1
        out["test" if k % every == every - 1 else "val" if k % every == every - 2 else "train"].append(r)
    return out


def _measure(vm: VideoModel, test_clips: ClipSet | None, cfg: TransferConfig) -> dict[str, Any]:
    from xmodal.eval.efficiency import throughput

    if test_clips is None:
        return {}
    inputs, _ = frozen_inputs(vm, test_clips, cfg.batch_size, cfg.feature_store)
    return {**evaluate(vm, test_clips, inputs, cfg.batch_size),
            "throughput_clips_per_s": throughput(vm, sample_pixels(test_clips, 4 * cfg.batch_size), cfg.batch_size)}


def sample_pixels(clips: ClipSet, most: int) -> torch.Tensor:
    """Clips to time and count FLOPs on: the decoded pixels, else (a split loaded out of core, never
    decoded) up to ``most`` blank clips of the spec's shape (one clip's memory, expanded): the towers'
    cost does not depend on the pixel values."""
    if clips.pixels is not None:
        return clips.pixels
    size = clips.spec.image.size
    return torch.zeros(1, clips.spec.num_frames, 3, size, size).expand(min(most, len(clips.paths)), -1, -1, -1, -1)


def _counts(vm: VideoModel) -> dict[str, int]:
    """Trainable and total parameters, and the trainable split into the task head's and the strategy's own."""
    from xmodal.eval.efficiency import parameter_counts

    counts = parameter_counts(vm)
    head = sum(p.numel() for p in vm.head.parameters() if p.requires_grad)
    return {"trainable_params": counts["trainable"], "total_params": counts["total"], "head_params": head,
            "strategy_params": counts["trainable"] - head}


def load_splits(vm: VideoModel | None, folder: Path | None, splits: dict[str, Sequence[dict[str, Any]] | None],
                cfg: TransferConfig, how: tuple[Any, Any, dict[str, Any], Any], root: Path | None,
                decoded: dict[str, ClipSet]) -> list[ClipSet | None]:
    """Each split's clips (None for no rows) with the task's targets; ``how``: ``(task, task config, meta,
    spec)``. With ``vm`` and a store ``folder`` (a frozen strategy): out of core, see ``stored_split``;
    else decoded into memory once per split and frame sampling and kept in ``decoded``."""
    task, tcfg, meta, spec = how
    out: list[ClipSet | None] = []
    for desc, rows in splits.items():
        if not rows:
            out.append(None)
            continue
        if vm is not None and folder is not None:
            got = stored_split(vm, rows, spec, folder, Loading(root, cfg.path_column, cfg.on_error, cfg.num_workers,
                                                               cfg.batch_size, desc))
        else:
            key = f"{desc} {spec}"  # clips decoded as this run's task samples them; targets are this run's own
            if key not in decoded:
                decoded[key] = load_split(rows, task, tcfg, meta, spec, root, cfg.path_column, cfg.on_error,
                                          cfg.num_workers, desc)
            got = decoded[key]
        out.append(dataclasses.replace(got, targets=task.targets(got.rows, meta, tcfg, desc)))
    return out


def transfer(model: Any, train_rows: Sequence[dict[str, Any]], cfg: TransferConfig | None = None,
             val_rows: Sequence[dict[str, Any]] | None = None, test_rows: Sequence[dict[str, Any]] | None = None,
             root: str | Path | None = None, out: str | Path | None = None, base: str | Path | None = None,
             decoded: dict[str, ClipSet] | None = None) -> TransferResult:
    """Transfer ``model`` to ``cfg.task`` on the videos of ``train_rows`` with ``cfg.strategy``.

    Metrics are measured on ``test_rows`` (else ``val_rows``). With ``out``, the run folder holds the
    engine's log and resumable state (``out/train``) and the transfer (``out/model``), which points
    to ``base`` (a checkpoint folder or hub name) or, when None, to a copy saved in ``out/base``.
    ``decoded``: a dict the caller keeps across runs on the same rows, base model and task (``compare``):
    each split's clips are decoded once per frame sampling and reused (the targets are rebuilt for each
    run's task options, e.g. a baseline's); a frozen strategy with a feature store neither reads nor fills
    it (it decodes only the clips the store lacks, a batch at a time, and keeps no pixels)."""
    from xmodal.eval.efficiency import PeakMemory, flops_per_clip

    cfg = cfg or TransferConfig()
    task, tcfg, _, _ = check(cfg)
    root, out = (Path(root) if root is not None else None), (Path(out) if out is not None else None)
    meta = task.meta(train_rows, tcfg)
    spec = task.sampling(tcfg, model.spec("video"))
    folder = store_folder(cfg.feature_store) if STRATEGIES.get(cfg.strategy).frozen else None
    splits = {"train rows": train_rows, "val rows": val_rows, "test rows": test_rows}
    args = (cfg, (task, tcfg, meta, spec), root, {} if decoded is None else decoded)
    if folder is None:
        train_clips, val_clips, test_clips = load_splits(None, None, splits, *args)
    if out is not None and base is None:  # before the strategy injects into (or trains) the model
        base = distributed.main_first(lambda: model.save_pretrained(out / "base").resolve())
    vm = build(model, cfg, meta)
    if folder is not None:  # out of core, after the build: the store's namespace is a digest of the built model
        train_clips, val_clips, test_clips = load_splits(vm, folder, splits, *args)
    test_clips = test_clips or val_clips
    counts = _counts(vm)
    with PeakMemory(next(vm.parameters()).device) as memory:
        t0 = time.perf_counter()
        history, cache = train(vm, train_clips, val_clips, cfg, out)
        train_seconds = time.perf_counter() - t0
    epochs = max(1, len(history.epochs))
    metrics: dict[str, Any] = {
        "task": cfg.task, "strategy": cfg.strategy, "frozen_backbone": vm.frozen, **_measure(vm, test_clips, cfg),
        **counts,
        "train_seconds": train_seconds, **cache, "epochs": len(history.epochs),
        "seconds_per_epoch": history.train_seconds / epochs, "peak_memory_mb": memory.peak_mb,
        "flops_per_clip": flops_per_clip(vm, sample_pixels(train_clips, 1)[0].to(next(vm.parameters()).device)),
        "skipped": [{"file": f, "problem": p} for f, p in train_clips.skipped]}
    if out is not None and distributed.is_main():
        save_transfer(vm, out / "model", base, metrics)
    return TransferResult(vm, metrics, history)
