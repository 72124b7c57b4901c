"""Argument definitions and handlers of the ``xmodal`` subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xmodal.cli.common import (build_config, column, config_args, fit_overrides, given, held_out_rows, load_model,
                               manifest_args, model_help, needs_towers, no_progress_arg, only_main, out_arg,
                               precision_arg, print_history, print_skipped, read_rows, start_run, training_args,
                               without_empty)
from xmodal.cli.listing import list_action, registry_option


# ---------------------------------------------------------------- demo
def demo_args(p: argparse.ArgumentParser) -> None:
    out_arg(p, "xmodal-demo", "output folder")
    p.add_argument("--epochs", type=int, help="alignment epochs (default from the demo config)")
    no_progress_arg(p)
    config_args(p)


def demo(args: argparse.Namespace) -> int:
    from xmodal.experiments.demo import DemoConfig, run_demo

    base: dict[str, Any] = {"out": args.out, "progress": not args.no_progress}
    if args.epochs is not None:
        base["align"] = {"fit": {"epochs": args.epochs}}
    run_demo(build_config(DemoConfig, args, base))
    return 0


# ---------------------------------------------------------------- world
def world_args(p: argparse.ArgumentParser) -> None:
    out_arg(p, "xmodal-world", "folder of the world")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--preview", action="store_true",
                   help="also write a contact sheet PNG and a GIF of clips (and a story strip if it has stories)")
    config_args(p)


def world(args: argparse.Namespace) -> int:
    from xmodal.experiments.world import WorldConfig, generate_world, world_paths

    base = {} if args.seed is None else {"seed": args.seed}
    root = generate_world(Path(args.out), build_config(WorldConfig, args, base))
    for name, path in world_paths(root).items():
        print(f"{name}: {path}")
    if args.preview:
        from xmodal.experiments.preview import write_preview

        for path in write_preview(root):
            print(f"preview: {path}")
    return 0


# ---------------------------------------------------------------- align
def align_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="lit", help=model_help("the two towers (default 'lit')"))
    manifest_args(p, "training manifest (CSV/JSONL) or folder of class folders", "val",
                  "run folder: log.jsonl, resumable state, model/")
    registry_option(p, "--loss", "losses", "contrastive loss (default clip)")
    p.add_argument("--list", action=list_action("losses", "backbones"))
    training_args(p)


def check_align(cfg: Any) -> None:
    """Names an AlignConfig refers to (loss, modalities), checked before any file is read."""
    from xmodal.engine.losses import LOSSES
    from xmodal.modalities import MODALITIES

    LOSSES.get(cfg.loss)
    for modality in cfg.modalities:
        MODALITIES.get(modality)


def check_align_rows(rows: list[dict[str, Any]], source: str, cfg: Any) -> None:
    """Every row holds each aligned column (text columns as valid text), checked before any file is read."""
    from xmodal.data.manifest import check_rows
    from xmodal.modalities import MODALITIES

    text = [col for m, col in zip(cfg.modalities, cfg.columns) if not MODALITIES.get(m).is_file]
    check_rows(rows, source, list(cfg.columns), text)


def align(args: argparse.Namespace) -> int:
    from xmodal.alignment.train import AlignConfig
    from xmodal.alignment.train import align as run_align

    needs_towers(args.model, "align")
    base = given(args, "loss", "batch_size", "on_error")
    if fit_overrides(args):
        base["fit"] = fit_overrides(args)
    cfg = build_config(AlignConfig, args, base)
    check_align(cfg)
    train, root = read_rows(args.train, "train")
    val = held_out_rows(args, "val")
    for rows, source in ((train, args.train), (val or [], args.val or args.train)):
        check_align_rows(rows, source, cfg)
    if val == train:
        val = None
    start_run(args, "align", cfg, {"train": (train, root), "val": (val, root)}, cfg.seed, model=args.model)
    result = run_align(load_model(args.model), train, cfg, val_rows=val, root=root, out=args.out)
    if not only_main():
        return 0
    print_history(result.history)
    print_skipped(result.skipped)
    print(f"model saved to {Path(args.out) / 'model'}")
    return 0


# ---------------------------------------------------------------- zeroshot
def zeroshot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help=model_help())
    p.add_argument("--data", required=True, help="manifest (CSV/JSONL) or folder of class folders")
    p.add_argument("--split", help="only rows whose 'split' column has this value")
    p.add_argument("--column", default="path", help="manifest column with the file paths (default: path)")
    p.add_argument("--label-column", default="label", help="manifest column with the class names (default: label)")
    p.add_argument("--classes", help="comma-separated class names (default: the labels found in the data)")
    p.add_argument("--template", action="append", help="prompt template with {} (repeatable; replaces --prompts)")
    p.add_argument("--prompts", type=_prompt_set, metavar="NAME", help=_prompts_help())
    registry_option(p, "--modality", "modalities", "modality of the items (default image)", default="image")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    p.add_argument("--out", help="folder for results.json and confusion.png")
    precision_arg(p)


def _prompts_help() -> str:
    from xmodal.tasks.prompts import PROMPTS

    sets = "; ".join(f"{name}: {' | '.join(PROMPTS.get(name)[:3])}{' ...' if len(PROMPTS.get(name)) > 3 else ''}"
                     for name in PROMPTS.names())
    return f"registered prompt set each class name is written into, averaged (default: the modality's own, else image). {sets}"


def _prompt_set(name: str) -> tuple[str, ...]:
    from xmodal.errors import UnknownNameError
    from xmodal.tasks.prompts import PROMPTS

    try:
        return PROMPTS.get(name)
    except UnknownNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def zeroshot(args: argparse.Namespace) -> int:
    from xmodal.eval.plots import plot_confusion
    from xmodal.modalities import MODALITIES
    from xmodal.modalities.text import check_text
    from xmodal.eval.report import text_table
    from xmodal.tasks.zeroshot import zeroshot as run_zeroshot

    rows, root = read_rows(args.data, args.split)
    classes = [check_text(c, "--classes") for c in args.classes.split(",")] if args.classes else None
    for t in args.template or ():
        check_text(t, "--template")
    rows, empty = without_empty(rows, args.column, args.data) if args.on_error == "skip" else (rows, [])
    items = column(rows, args.column, args.data, path=MODALITIES.get(args.modality).is_file)
    labels = [str(v).strip() for v in column(rows, args.label_column, args.data, text=True)]
    model = load_model(args.model)
    templates = tuple(args.template) if args.template else args.prompts  # None: the modality's own prompts
    res = run_zeroshot(model, items, labels, classes, templates, modality=args.modality, root=root,
                       on_error=args.on_error, precision=args.precision or "fp32")
    print(text_table([{"items": len(res.targets), "classes": len(res.classnames), "top1": round(res.top1, 4),
                       "top5": round(res.top5, 4), "mean class acc": round(res.mean_class_accuracy, 4),
                       "skipped": len(empty) + len(res.skipped)}]))
    for file, problem in [*empty, *res.skipped]:
        print(f"skipped {file}: {problem}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(res.to_dict(), indent=2))
        plot_confusion(res.confusion, res.classnames, out / "confusion.png", "zero-shot confusion")
        print(f"wrote {out / 'results.json'} and {out / 'confusion.png'}")
    return 0


COMMANDS = {  # name -> (flags, handler, help) of the subcommands above
    "demo": (demo_args, demo, "world -> LiT alignment -> zero-shot -> report, in minutes on a CPU"),
    "world": (world_args, world, "generate the built-in multimodal world (and a preview)"),
    "align": (align_args, align, "contrastively align two towers on a manifest"),
    "zeroshot": (zeroshot_args, zeroshot, "zero-shot classify images or videos from class names"),
}
