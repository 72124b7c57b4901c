"""``xmodal transfer`` and ``xmodal compare``: image-to-video transfer to a task from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xmodal.cli.common import (build_config, config_args, fit_overrides, given, load_model, model_help, needs_towers,
                               no_progress_arg, only_main, out_arg, overwrite_arg, start_run, training_args,
                               unique_rows)
from xmodal.cli.listing import list_action, registry_option


# ---------------------------------------------------------------- transfer
def _task_args(p: argparse.ArgumentParser) -> None:
    registry_option(p, "--task", "tasks", "task to transfer to (default classify)")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="task option, e.g. --task-option match_columns=[colour,shape] (repeatable; "
                        "`xmodal list tasks` shows them)")


def _task_config(args: argparse.Namespace) -> dict[str, Any]:
    from xmodal.config import apply_overrides

    out: dict[str, Any] = {"task_options": apply_overrides({}, args.task_option)} if args.task_option else {}
    return {**out, **({"task": args.task} if args.task else {})}


def transfer_args(p: argparse.ArgumentParser) -> None:
    registry_option(p, "--strategy", "strategies", "transfer strategy", required=True)
    _task_args(p)
    p.add_argument("--model", required=True, help=model_help("the aligned base model"))
    p.add_argument("--data", required=True, help="video manifest (CSV/JSONL: path + the task's columns "
                   "[,split]: classify label, retrieve caption, ground query,start,end,duration) or folder of class folders")
    p.add_argument("--val", help="validation manifest (default: rows of --data whose split is 'val', else a per-class split)")
    p.add_argument("--test", help="test manifest (default: rows of --data whose split is 'test', else a per-class split)")
    p.add_argument("--out", required=True, help="run folder: model/ (strategy weights + pointer to the base), log, state")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy option, e.g. --option rank=8 --option head.kind=conv (repeatable; --list shows them)")
    overwrite_arg(p)
    no_progress_arg(p)
    p.add_argument("--list", action=list_action("strategies"))
    training_args(p, lr="peak learning rate of what the strategy trains (default: the strategy's)", batch_size=False)


def _splits(args: argparse.Namespace, label_column: str) -> tuple[dict[str, list[dict[str, Any]]], Path]:
    from xmodal.data.manifest import load_media_manifest
    from xmodal.strategies.train import split_rows

    rows, root = load_media_manifest(args.data)
    rows = unique_rows(rows, args.data)
    splits = split_rows(rows, label_column)
    for name in ("val", "test"):
        extra = getattr(args, name)
        if extra:
            splits[name] = unique_rows(load_media_manifest(extra)[0], extra)
            if name == "val" and not args.test and "split" not in rows[0]:
                splits["train"] += splits["test"]
    if not splits["train"]:
        from xmodal.errors import DataError

        raise DataError(args.data, "no training rows (split column has no 'train')")
    return splits, root


def transfer(args: argparse.Namespace) -> int:
    from xmodal.config import apply_overrides
    from xmodal.eval.report import text_table
    from xmodal.strategies.train import TransferConfig, check
    from xmodal.strategies.train import transfer as run_transfer

    needs_towers(args.model, "transfer")
    base: dict[str, Any] = {"strategy": args.strategy, "options": apply_overrides({}, args.option),
                            **_task_config(args), **given(args, "on_error", "lr")}
    base["fit"] = {**fit_overrides(args), "progress": not args.no_progress}
    cfg = build_config(TransferConfig, args, base)
    task = check(cfg)[0]  # unknown task, strategy or option: fail before reading any file
    splits, root = _splits(args, cfg.task_options.get("label_column", "label"))
    start_run(args, "transfer", cfg, {k: (v, root) for k, v in splits.items()}, cfg.seed, model=args.model)
    model = load_model(args.model)
    pointer = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    res = run_transfer(model, splits["train"], cfg, splits["val"] or None, splits["test"] or None, root=root,
                       out=args.out, base=pointer)
    if not only_main():
        return 0
    m = res.metrics
    row = {k: m.get(k) for k in (*task.report, "trainable_params", "total_params", "train_seconds", "peak_memory_mb",
                                 "throughput_clips_per_s", "flops_per_clip")}
    print(text_table([{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}]))
    out = Path(args.out)
    (out / "metrics.json").write_text(json.dumps({k: v for k, v in m.items() if k != "confusion"}, indent=2, default=float))
    print(f"saved {out / 'model'} (strategy weights + pointer to {pointer}); metrics in {out / 'metrics.json'}")
    return 0


# ---------------------------------------------------------------- compare
def compare_args(p: argparse.ArgumentParser) -> None:
    from xmodal.catalog import list_strategies

    p.add_argument("--strategies", default="all", help="comma-separated: 'all', 'fast', names or name:key=value variants "
                   f"separated by ';' (default: all); names: {', '.join(list_strategies())}")
    p.add_argument("--model", help=model_help("base model (default: align a LiT ViT on the built-in world first)"))
    _task_args(p)
    p.add_argument("--data", help="video manifest or folder of class folders (default: the built-in world's data "
                   "for the task)")
    out_arg(p, "xmodal-compare", "output folder")
    p.add_argument("--epochs", type=int, help="training epochs of every strategy")
    p.add_argument("--seeds", type=int, help="training runs per strategy (different seeds); >1 reports mean and std")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--progress", action="store_true", help="progress bars")
    overwrite_arg(p)
    p.add_argument("--list", action=list_action("strategies"))
    config_args(p)


def compare(args: argparse.Namespace) -> int:
    from xmodal.experiments.compare import CompareConfig
    from xmodal.experiments.compare import compare as run_compare

    sep = ";" if ";" in args.strategies else ","
    specs = [s.strip() for s in args.strategies.split(sep) if s.strip()]
    base: dict[str, Any] = {"out": args.out, "strategies": specs, "progress": bool(args.progress),
                            "overwrite": args.overwrite,
                            **given(args, "model", "data", "threads", "seeds")}
    transfer = {**_task_config(args), **({"fit": {"epochs": args.epochs}} if args.epochs is not None else {})}
    if transfer:
        base["transfer"] = transfer
    run_compare(build_config(CompareConfig, args, base))
    return 0


# ---------------------------------------------------------------- export
def export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a transfer folder (RUN/model, written by `xmodal transfer`)")
    p.add_argument("--to", required=True, metavar="FORMAT",
                   help="transformers (AutoModel folder, LoRA/bitfit merged), peft (LoRA adapter) or onnx (the towers)")
    p.add_argument("--out", required=True, help="folder to write the export and its model card (README.md) to")


def export(args: argparse.Namespace) -> int:
    from xmodal.exporters import export as run_export

    out = run_export(args.model, args.to, args.out)
    print(f"exported {args.model} to {args.to}: {out} (model card: {out / 'README.md'})")
    return 0


COMMANDS = {  # name -> (flags, handler, help) of the subcommands above
    "transfer": (transfer_args, transfer, "transfer an aligned model to video with one strategy"),
    "compare": (compare_args, compare, "run many transfer strategies side by side (table + plots)"),
    "export": (export_args, export, "export a transferred model to transformers, PEFT or ONNX (loads without xmodal)"),
}
