"""Run many strategies on the same base model, data and task, side by side (``xmodal compare``).

Writes ``results.json``, ``report.md`` (one table row per strategy: the task's metrics, trainable
parameters and their ratio to the reference strategy's, ``full`` by default, train time, peak memory,
clips/s, FLOPs per clip) and two PNG plots of the efficiency frontier: the task's headline metric vs
trainable parameters and vs training time (``compare_report.py``).

Without a model and data it uses the built-in world: a LiT model with a small ViT vision tower is
first aligned on the world's images (cached in ``out/base`` so re-runs skip it), then transferred to
the task on the world's data for it (``WORLD_DATA``: the 8 motion classes of its clips, their captions,
the moments of its stories, the questions about them). After the strategies, the task's ``baselines``
run as rows of their own (``qa``: the question-only head, which never sees the video). Finished runs
are cached in ``out/runs/<task>/<folder>`` too (the label made safe for shells: ``partial-mode-bitfit``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from xmodal.alignment.train import AlignConfig
from xmodal.backbones.lit import LiTConfig
from xmodal.encoders.vision import VisionConfig
from xmodal.config import apply_overrides, from_dict, to_dict
from xmodal.experiments.compare_report import breakdown_keys, multi_section, write_compare_report
from xmodal.experiments.world import WorldConfig
from xmodal.experiments.world_render import COLOURS, SHAPES
from xmodal.engine import distributed
from xmodal.engine.checkpoint import seed_everything
from xmodal.engine.fit import FitConfig
from xmodal.engine.runs import fingerprint, folder_fingerprint, open_run
from xmodal.errors import ConfigError
from xmodal.strategies.base import STRATEGIES
from xmodal.strategies.train import TransferConfig, check, split_rows, transfer
from xmodal.tasks.base import TASKS
from xmodal.tasks.multi import MultiConfig

ALL: tuple[str, ...] = (
    "zero_shot", "linear_probe", "temporal_head:head.kind=mean", "temporal_head:head.kind=attention",
    "temporal_head:head.kind=transformer", "temporal_head:head.kind=conv", "side_network", "distill",
    "full", "partial:mode=last_k", "partial:mode=bitfit", "adapter", "adapter:temporal=false", "lora", "prompt",
    "extra",
)
Run = tuple[str, str, dict[str, Any], dict[str, Any]]  # label, strategy, its options, task option overrides
FAST: tuple[str, ...] = ("zero_shot", "linear_probe", "temporal_head", "side_network", "extra")
MULTI_SHARE = 0.6  # a multi-task compare trains k + 1 runs per strategy (each task alone, then all at once): each
# gets this share of its single-task compare budget (the 4 world tasks: 3.6 minutes alone and 3.6 at once, not 6 and 6)
FAST_MULTI: tuple[str, ...] = ("adapter",)  # "fast" for a multi-task compare: one shared set of adapted weights
# (frozen strategies share nothing but the frozen backbone), each run beside its single-task runs
# task -> (the world's manifest for it, task options its data needs, engine settings for it)
WORLD_DATA: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "classify": ("videos", {}, {}),
    "retrieve": ("videos", {"match_columns": ["colour", "shape", "motion"]}, {}),  # clips of one description match
    "ground": ("grounding", {}, {"max_minutes": 2.0}),  # 16 frames per story, ~2.5 moments each: 2 min per run
    "caption": ("videos", {"keywords": [*COLOURS, *SHAPES]}, {"max_minutes": 2.0}),  # the clips' captions (one
    # object each; the stories' captions.csv is the harder, dense form); keywords_exact: the right colour and shape
    "qa": ("qa", {"breakdown_columns": ["kind", "held_out"]}, {"max_minutes": 2.0}),  # ~3 questions per story
}


@dataclass
class CompareConfig:
    out: str = "xmodal-compare"  # output folder (results.json, report.md, plots, runs/, base/)
    strategies: tuple[str, ...] = ("all",)  # "all", "fast", names, or "name:key=value,key=value" variants
    model: str = ""  # base model (checkpoint folder or CLIP/SigLIP name); "" = align a LiT ViT on the world
    data: str = ""  # video manifest or folder of class folders; "" = the built-in world's data for the task
    world: WorldConfig = field(default_factory=lambda: WorldConfig(
        images_train=100, image_rotation=180.0, image_marker=True, clips_train=48, clips_val=16, clips_test=48,
        stories_train=300, stories_val=50, stories_test=100))  # the built-in world (when data is ""): 384 train /
    # 128 val / 384 test clips of the 8 motion classes (one test clip = 0.26 points), 300 / 50 / 100 stories
    # (untrimmed clips) for grounding and multi-task qa (task_stories: a qa compare's own), and images whose objects
    # turn any way and carry the orientation dot, as in clips and stories (a base aligned on upright shapes alone
    # tells rotated hearts from squares at chance)
    task_stories: dict[str, int] = field(default_factory=lambda: {"qa": 2000})  # training stories of the world
    # for a single-task compare of these tasks, in place of world.stories_train (the same val and test stories):
    # qa learns from ~3 questions a story, and 300 stories' 900 questions are memorised (see bench/results/compare_qa.md);
    # multi-task compares keep world.stories_train for all their tasks
    base: LiTConfig = field(default_factory=lambda: LiTConfig(num_frames=8, vision=VisionConfig(
        arch="vit", width=96, depth=4, patch_size=8, image_size=64, heads=4, stem="conv")))  # LiT aligned first
    # (model ""): a conv-stem ViT at the clips' 64 px (at 32 px a 4-px heart and square look alike)
    align: AlignConfig = field(default_factory=lambda: AlignConfig(
        batch_size=128, label_column="", fit=FitConfig(epochs=30, lr=2e-3, monitor="", progress=False,
                                                      precision="auto")))  # alignment
    # of that LiT base: pairs only (no class positives), so the embedding keeps each caption's size and place
    transfer: TransferConfig = field(default_factory=TransferConfig)  # shared settings of every strategy run,
    # its ``task`` (classify, retrieve, ground, qa) and ``task_options`` included
    baselines: bool = True  # also run the task's baselines (e.g. qa without the video) after the strategies
    budget_scale: float = 1.0  # multiplies every run's training budget in minutes (the world's per-task budget, else
    # transfer.fit.max_minutes); above 1 measures runs nearer convergence, at the cost of the compare's time
    seeds: int = 1  # training runs per strategy, seeded transfer.seed, +1, ...; > 1 reports mean and std of
    # the accuracies (on small data one run's top-1 moves by several points with the seed alone)
    reference: str = "full"  # strategy whose trainable parameters are 100% ("% of full" column)
    threads: int = 0  # torch CPU threads; 0 = torch's default
    progress: bool = False  # progress bars
    overwrite: bool = False  # re-run a run folder (out/base, out/runs/...) that holds other settings or data


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``"adapter:temporal=true,bottleneck=4"`` -> (label, "adapter", {"temporal": True, "bottleneck": 4})."""
    name, _, rest = spec.partition(":")
    STRATEGIES.get(name)
    options = apply_overrides({}, [kv for kv in rest.split(",") if kv]) if rest else {}
    pairs = [kv.split("=", 1) for kv in rest.split(",") if kv]
    label = name if not pairs else name + "[" + ",".join(k.split(".")[-1] + "=" + v for k, v in pairs) + "]"
    return label, name, options


def folder_name(label: str) -> str:
    """A run folder name a shell takes unquoted: ``partial[mode=bitfit]`` -> ``partial-mode-bitfit`` (every run
    of characters other than letters, digits, ``.``, ``_``, ``@`` and ``-`` becomes one ``-``); the label stays in reports."""
    return re.sub(r"[^A-Za-z0-9._@-]+", "-", label).strip("-") or "run"


def planned(cfg: CompareConfig) -> list[Run]:
    """The runs of a compare: every strategy spec, then (``cfg.baselines``) the task's baselines."""
    runs = [(*parse_spec(spec), {}) for spec in expand(cfg.strategies, multi=bool(subtasks(cfg)))]
    if cfg.baselines:
        runs += [(label, name, {}, dict(overrides)) for label, name, overrides in TASKS.get(cfg.transfer.task).baselines]
    return runs


def transfer_config(cfg: CompareConfig, spec: Run, seed: int) -> TransferConfig:
    """The shared transfer settings with one run's strategy, its options and task option overrides."""
    _, name, options, overrides = spec
    fit = dataclasses.replace(cfg.transfer.fit, max_minutes=cfg.transfer.fit.max_minutes * cfg.budget_scale)
    return dataclasses.replace(cfg.transfer, strategy=name, options=options, seed=seed, fit=fit,
                               task_options={**cfg.transfer.task_options, **overrides})


def expand(strategies: Sequence[str], multi: bool = False) -> list[str]:
    out: list[str] = []
    for s in strategies:
        out.extend(ALL if s == "all" else (FAST_MULTI if multi else FAST) if s == "fast" else [s])
    if not out:
        raise ConfigError("compare: no strategies given")
    return list(dict.fromkeys(out))


def multi_config(cfg: CompareConfig) -> MultiConfig | None:
    """The config of a multi-task compare's task (a MultiConfig), else None."""
    task = TASKS.get(cfg.transfer.task)
    tcfg = from_dict(task.config_cls, dict(cfg.transfer.task_options), where=f"{cfg.transfer.task} task options")
    return tcfg if isinstance(tcfg, MultiConfig) else None


def subtasks(cfg: CompareConfig) -> tuple[str, ...]:
    """The tasks of a multi-task compare, else ()."""
    multi = multi_config(cfg)
    return tuple(multi.tasks) if multi is not None else ()


def minutes(cfg: CompareConfig, task: str) -> float:
    """The training budget of ``task`` alone within a multi-task compare: :data:`MULTI_SHARE` of a single-task
    compare's (the world's setting for it, else fit's); the multi-task run gets the sum over its tasks."""
    default = cfg.transfer.fit.max_minutes
    alone = default if cfg.data or task not in WORLD_DATA else WORLD_DATA[task][2].get("max_minutes", default)
    return MULTI_SHARE * alone


def world_rows(cfg: CompareConfig, say: Callable[[str], None]) -> tuple[list[dict[str, Any]], Path, CompareConfig]:
    """The built-in world's rows for ``cfg.transfer.task`` (generated or reused in ``out/world``) and
    ``cfg`` with the task options that data needs; a multi-task compare gets the rows of each of its
    tasks, named in a ``task`` column, and the sum of their budgets."""
    from xmodal.data.manifest import read_manifest
    from xmodal.experiments.world import world_paths

    tasks = subtasks(cfg)
    if tasks:
        parts = [world_rows(single(cfg, t), say) for t in tasks]
        rows = [{**r, "task": t} for t, (part, _, _) in zip(tasks, parts) for r in part]
        options = {t: dict(c.transfer.task_options) for t, (_, _, c) in zip(tasks, parts)}
        fit = dataclasses.replace(cfg.transfer.fit, max_minutes=sum(minutes(cfg, t) for t in tasks))
        transfer_cfg = dataclasses.replace(cfg.transfer, fit=fit, task_options={**cfg.transfer.task_options,
                                                                                "options": options})
        return rows, parts[0][1], dataclasses.replace(cfg, transfer=transfer_cfg)
    if cfg.transfer.task not in WORLD_DATA:
        raise ConfigError(f"compare: the built-in world has no data for task {cfg.transfer.task!r}; "
                          f"give --data (it has {sorted(WORLD_DATA)})")
    manifest, options, fit = WORLD_DATA[cfg.transfer.task]
    folder, world = task_world(cfg)
    cfg = dataclasses.replace(cfg, world=world)
    root = shared_world(cfg, folder, say)
    transfer_cfg = dataclasses.replace(cfg.transfer, task_options={**options, **cfg.transfer.task_options},
                                       fit=dataclasses.replace(cfg.transfer.fit, **fit))
    return read_manifest(world_paths(root)[manifest]), root, dataclasses.replace(cfg, transfer=transfer_cfg)


def task_world(cfg: CompareConfig) -> tuple[str, WorldConfig]:
    """The world folder (in ``out``) and settings of a single-task compare's rows: ``world``, or for a task of
    ``cfg.task_stories`` ``world-<task>``, its stories alone (the same stories, with that many for training)."""
    task = cfg.transfer.task
    if task not in cfg.task_stories:
        return "world", cfg.world
    none = dict.fromkeys(("images_train", "images_val", "images_test", "clips_train", "clips_val", "clips_test"), 0)
    return f"world-{task}", dataclasses.replace(cfg.world, stories_train=cfg.task_stories[task], **none)


def shared_world(cfg: CompareConfig, folder: str, say: Callable[[str], None]) -> Path:
    """``out/<folder>`` generated with ``cfg.world`` or reused; its path."""
    from xmodal.experiments.world import generate_world

    say(f"world: generating / reusing {Path(cfg.out) / folder}")
    # under torchrun: rank 0 writes the world, the other ranks read it
    return distributed.main_first(lambda: generate_world(Path(cfg.out) / folder, cfg.world, progress=cfg.progress))


def align_base(cfg: CompareConfig, root: Path, say: Callable[[str], None]) -> str:
    """A LiT ViT aligned on the world's images (cached in ``out/base``); its folder."""
    from xmodal.alignment.train import align
    from xmodal.api import load
    from xmodal.data.manifest import read_manifest
    from xmodal.experiments.world import world_paths

    out = Path(cfg.out) / "base"
    images = read_manifest(world_paths(root)["images"])
    same = distributed.main_first(lambda: open_run(out, "align", {"base": to_dict(cfg.base), "align": to_dict(cfg.align)},
                                                   {"images": fingerprint(images, root)}, cfg.overwrite))
    if distributed.agree(not same or not (out / "model" / "xmodal.json").is_file()):
        say("base: aligning a LiT model (locked MiniLM + ViT from scratch) on the world's images")
        seed_everything(cfg.align.seed)  # before the model is built: the same base every time
        t0 = time.perf_counter()
        model = load("lit", **to_dict(cfg.base)).to(distributed.device())
        res = align(model, [r for r in images if r["split"] == "train"], cfg.align,
                    val_rows=[r for r in images if r["split"] == "val"], root=root, out=out)
        distributed.barrier()  # rank 0 has saved the base
        last = res.history.epochs[-1] if res.history.epochs else {}
        shown = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith("val_"))
        say(f"base: aligned in {time.perf_counter() - t0:.0f}s; last epoch {shown or 'no validation'}")
    return str((out / "model").resolve())


def prepare(cfg: CompareConfig, say: Callable[[str], None]
            ) -> tuple[str, dict[str, list[dict[str, Any]]], Path, CompareConfig]:
    """(base model reference, rows per split, data root, cfg completed for the data)."""
    from xmodal.data.manifest import load_media_manifest

    first = cfg  # the settings as given (world_rows gives a task's own world)
    if cfg.data:
        if not cfg.model:
            raise ConfigError("compare: with your own data, give --model (a CLIP/SigLIP name or an aligned checkpoint)")
        rows, root = load_media_manifest(cfg.data)
    else:
        rows, root, cfg = world_rows(cfg, say)
    # the base aligns on the images of out/world (a task's own world, world-<task>, has stories only)
    base = cfg.model or align_base(cfg, root if task_world(first)[0] == "world" else shared_world(first, "world", say), say)
    # without a split column, each value of the label column (when rows have one) is split alike
    return base, split_rows(rows, cfg.transfer.task_options.get("label_column", "label")), root, cfg


def run_one(spec: Run, base: str, splits: dict[str, list[dict[str, Any]]], root: Path, cfg: CompareConfig,
            say: Callable[[str], None], k: int = 0, decoded: dict[str, Any] | None = None, group: str = "") -> dict[str, Any]:
    """Transfer a fresh copy of the base with one run (a strategy spec or a task baseline) and the
    ``k``-th seed; cached in ``out/runs/<group>/<folder>`` (``group``: the task unless given; ``<folder>@seed<seed>`` for
    k > 0, ``<folder>`` the label
    made safe for shells by :func:`folder_name`) and reused
    only when the base, the data and every setting (task option overrides included) are the same (a run
    folder of other settings or data is refused unless ``cfg.overwrite``; a partial one of the same
    resumes). ``decoded`` keeps the decoded clips of each split across the
    runs of one compare."""
    from xmodal.api import load

    label, name, options, overrides = spec
    seed = cfg.transfer.seed + k
    name_k = folder_name(label) if k == 0 else f"{folder_name(label)}@seed{seed}"
    run = Path(cfg.out) / "runs" / (group or cfg.transfer.task) / name_k
    tcfg = transfer_config(cfg, spec, seed)
    tcfg.fit = dataclasses.replace(tcfg.fit, progress=False, verbose=False)
    _, task_cfg, _, strategy_cfg = check(tcfg)  # the settings in full, defaults included
    key = json.loads(json.dumps({"base": base, "data": cfg.data or to_dict(cfg.world), "transfer": to_dict(tcfg),
                                 "task": to_dict(task_cfg), "strategy": to_dict(strategy_cfg)}))
    rows = [r for part in splits.values() for r in part]  # the built-in world is named by its config in ``key``
    done = run / "metrics.json"
    data = {"rows": fingerprint(rows, root) if cfg.data else "", "model": folder_fingerprint(base)}
    same = distributed.main_first(lambda: open_run(run, "transfer", key, data, cfg.overwrite))
    if distributed.agree(same and done.is_file()):
        say(f"{label}: cached in {run}")
        return {"seed": seed, **json.loads(done.read_text())}
    t0 = time.perf_counter()
    res = transfer(load(base).to(distributed.device()), splits["train"], tcfg, splits["val"] or None,
                   splits["test"] or None, root=root, out=run,
                   base=base, decoded=decoded)
    paper = STRATEGIES.get(name).paper
    if overrides:
        paper = f"baseline: the {name} strategy with task options {json.dumps(overrides)} ({paper})"
    metrics = {"label": label, "paper": paper, "options": options, "seed": seed, **res.metrics,
               "wall_seconds": time.perf_counter() - t0, "run_key": key}
    metrics.pop("confusion", None)
    if distributed.is_main():
        done.write_text(json.dumps(metrics, indent=2, default=float))
    head = TASKS.get(cfg.transfer.task).report[0]
    say(f"{label}{'' if k == 0 else f' (seed {seed})'}: {head} {metrics.get(head, float('nan')):.3f}, {metrics['trainable_params']:,} trainable, "
        f"{metrics['train_seconds']:.1f}s")
    return metrics


def run_seeds(spec: Run, base: str, splits: dict[str, list[dict[str, Any]]], root: Path, cfg: CompareConfig,
              say: Callable[[str], None], decoded: dict[str, Any] | None = None, group: str = "") -> dict[str, Any]:
    """``cfg.seeds`` runs of one spec (in ``out/runs/<group>``, the task's unless given): the first run's record
    with the task's report metrics and the train time averaged, their standard deviations as ``<key>_std`` and
    every run's headline metric in ``<key>_runs``."""
    runs = [run_one(spec, base, splits, root, cfg, say, k, decoded, group) for k in range(cfg.seeds)]
    if len(runs) == 1:
        return runs[0]
    report = TASKS.get(cfg.transfer.task).report
    merged = dict(runs[0], seeds=[r["seed"] for r in runs], **{f"{report[0]}_runs": [r[report[0]] for r in runs]})
    for key in (*report, *breakdown_keys(runs, report[0]), "train_seconds"):
        values = torch.tensor([float(r.get(key, float("nan"))) for r in runs], dtype=torch.float64)
        merged[key], merged[f"{key}_std"] = float(values.mean()), float(values.std())
    return merged


def single(cfg: CompareConfig, task: str, options: dict[str, Any] | None = None) -> CompareConfig:
    """``cfg`` for ``task`` alone within a multi-task compare: its options (from the multi-task options
    unless given) and its own budget."""
    options = dict(cfg.transfer.task_options).get("options", {}).get(task, {}) if options is None else options
    fit = dataclasses.replace(cfg.transfer.fit, max_minutes=minutes(cfg, task))
    return dataclasses.replace(cfg, task_stories={}, transfer=dataclasses.replace(cfg.transfer, task=task,
                                                                                  task_options=dict(options), fit=fit))


def run_alone(spec: str, base: str, splits: dict[str, list[dict[str, Any]]], root: Path, alone: dict[str, CompareConfig],
              column: str, say: Callable[[str], None], decoded: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The single-task runs of one spec beside a multi-task run: each task on its rows (``column`` names a
    row's task), cached in ``out/runs/multi-alone/<task>`` (apart from ``compare --task <task>`` runs: the budgets
    of a multi-task compare's runs differ, see :data:`MULTI_SHARE`)."""
    out = {}
    for task, cfg in alone.items():
        rows = {k: [r for r in v if r.get(column) == task] for k, v in splits.items()}
        out[task] = run_seeds(spec, base, rows, root, cfg, say, decoded.setdefault(task, {}), f"multi-alone/{task}")
    return out


def compare(cfg: CompareConfig | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every strategy of ``cfg.strategies`` on ``cfg.transfer.task`` and write the report. A
    multi-task compare also runs each strategy on each of its tasks alone and reports them side by side."""
    cfg = cfg or CompareConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tasks = subtasks(cfg)
    specs = planned(cfg)
    for spec in specs:  # unknown names and options fail before any work
        check(transfer_config(cfg, spec, cfg.transfer.seed))
    if cfg.seeds < 1:
        raise ConfigError(f"compare: seeds must be >= 1, got {cfg.seeds}")
    if cfg.budget_scale <= 0:
        raise ConfigError(f"compare: budget_scale must be > 0, got {cfg.budget_scale}")
    start = time.perf_counter()
    budgets = {t: single(cfg, t) for t in tasks}  # the single-task budgets, before the multi-task one is set
    base, splits, root, cfg = prepare(cfg, say)
    alone = {t: single(budgets[t], t, cfg.transfer.task_options["options"][t]) for t in tasks}
    decoded: dict[str, Any] = {}  # each split's clips, decoded once for every strategy
    results, singles, decoded_alone = [], {}, {}
    for spec in specs:
        results.append(run_seeds(spec, base, splits, root, cfg, say, decoded))
        if tasks:
            column = multi_config(cfg).task_column
            singles[results[-1]["label"]] = run_alone(spec, base, splits, root, alone, column, say, decoded_alone)
    extra = [multi_section(results, singles, tasks)] if tasks else []
    if not distributed.is_main():  # under torchrun: rank 0 writes the report
        return {}
    return write_compare_report(cfg, TASKS.get(cfg.transfer.task), results, base,
                                {k: len(v) for k, v in splits.items()}, time.perf_counter() - start, say, extra)
