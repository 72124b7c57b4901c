"""Argument definitions and handlers of the ``xmodal`` subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xmodal.config import apply_overrides, from_dict, load_yaml, to_dict


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with settings (same keys as the config dataclass)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set align.fit.epochs=4 (repeatable)")


def _build_config(cls: type, args: argparse.Namespace, base: dict[str, Any]) -> Any:
    data = to_dict(cls())
    if args.config:
        data = _merge(data, load_yaml(args.config))
    data = _merge(data, base)
    return from_dict(cls, apply_overrides(data, args.overrides))


def _fit(args: argparse.Namespace) -> dict[str, Any]:
    """The engine overrides (``fit.epochs``, ``fit.lr``) given on the command line."""
    return {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---------------------------------------------------------------- demo
def demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="xmodal-demo", help="output folder (default: ./xmodal-demo)")
    p.add_argument("--epochs", type=int, help="alignment epochs (default from the demo config)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _config_args(p)


def demo(args: argparse.Namespace) -> int:
    from xmodal.experiments.demo import DemoConfig, run_demo

    base: dict[str, Any] = {"out": args.out, "progress": not args.no_progress}
    if args.epochs is not None:
        base["align"] = {"fit": {"epochs": args.epochs}}
    run_demo(_build_config(DemoConfig, args, base))
    return 0


# ---------------------------------------------------------------- world
def world_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="xmodal-world", help="folder of the world (default: ./xmodal-world)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--preview", action="store_true",
                   help="also write a contact sheet PNG and a GIF of clips (and a story strip if it has stories)")
    _config_args(p)


def world(args: argparse.Namespace) -> int:
    from xmodal.experiments.world import WorldConfig, generate_world, world_paths

    base = {} if args.seed is None else {"seed": args.seed}
    root = generate_world(Path(args.out), _build_config(WorldConfig, args, base))
    for name, path in world_paths(root).items():
        print(f"{name}: {path}")
    if args.preview:
        from xmodal.experiments.preview import write_preview

        for path in write_preview(root):
            print(f"preview: {path}")
    return 0


# ---------------------------------------------------------------- align
def align_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="lit", help="'lit', a checkpoint folder, or a CLIP/SigLIP hub name or folder")
    p.add_argument("--train", required=True, help="training manifest (CSV/JSONL) or folder of class folders")
    p.add_argument("--val", help="validation manifest (default: rows of --train whose split is 'val')")
    p.add_argument("--out", required=True, help="run folder: log.jsonl, resumable state, model/")
    p.add_argument("--loss", choices=["clip", "siglip"], help="contrastive loss (default clip)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--on-error", choices=["raise", "skip"], help="bad file: fail fast (default) or skip and count")
    _config_args(p)


def _rows(source: str, split: str | None) -> tuple[list[dict[str, Any]], Path]:
    from xmodal.data.manifest import load_media_manifest

    from xmodal.errors import DataError

    rows, root = load_media_manifest(source)
    if split is not None and rows and "split" in rows[0]:
        rows = [r for r in rows if r.get("split") == split]
        if not rows:
            raise DataError(source, f"no rows with split {split!r}")
    return rows, root


def _column(rows: list[dict[str, Any]], name: str, source: str) -> list[Any]:
    from xmodal.errors import DataError

    if not rows:
        raise DataError(source, "no rows")
    if name not in rows[0]:
        raise DataError(source, f"no column {name!r}; columns are {list(rows[0])}")
    return [r[name] for r in rows]


def align(args: argparse.Namespace) -> int:
    from xmodal.api import load
    from xmodal.alignment.train import AlignConfig
    from xmodal.alignment.train import align as run_align

    base: dict[str, Any] = {}
    for key, value in (("loss", args.loss), ("batch_size", args.batch_size), ("on_error", args.on_error)):
        if value is not None:
            base[key] = value
    if _fit(args):
        base["fit"] = _fit(args)
    cfg = _build_config(AlignConfig, args, base)
    train, root = _rows(args.train, "train")
    val, _ = _rows(args.val, None) if args.val else _rows(args.train, "val")
    if val is train or not val or val == train:
        val = None
    model = load(args.model)
    result = run_align(model, train, cfg, val_rows=val, root=root, out=args.out)
    for record in result.history.epochs:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable file(s):")
        for file, problem in result.skipped:
            print(f"  {file}: {problem}")
    print(f"model saved to {Path(args.out) / 'model'}")
    return 0


# ---------------------------------------------------------------- zeroshot
def zeroshot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint folder, 'lit', or a CLIP/SigLIP hub name or folder")
    p.add_argument("--data", required=True, help="manifest (CSV/JSONL) or folder of class folders")
    p.add_argument("--split", help="only rows whose 'split' column has this value")
    p.add_argument("--column", default="path", help="manifest column with the file paths (default: path)")
    p.add_argument("--label-column", default="label", help="manifest column with the class names (default: label)")
    p.add_argument("--classes", help="comma-separated class names (default: the labels found in the data)")
    p.add_argument("--template", action="append", help="prompt template with {} (repeatable)")
    p.add_argument("--modality", choices=["image", "video", "audio", "series"], default="image")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    p.add_argument("--out", help="folder for results.json and confusion.png")


def zeroshot(args: argparse.Namespace) -> int:
    from xmodal.api import load
    from xmodal.eval.plots import plot_confusion
    from xmodal.eval.report import text_table
    from xmodal.tasks.zeroshot import DEFAULT_TEMPLATES
    from xmodal.tasks.zeroshot import zeroshot as run_zeroshot

    rows, root = _rows(args.data, args.split)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    model = load(args.model)
    items = _column(rows, args.column, args.data)
    labels = _column(rows, args.label_column, args.data)
    res = run_zeroshot(model, items, labels, classes, tuple(args.template or DEFAULT_TEMPLATES),
                       modality=args.modality, root=root, on_error=args.on_error)
    print(text_table([{"items": len(res.targets), "classes": len(res.classnames), "top1": round(res.top1, 4),
                       "top5": round(res.top5, 4), "mean class acc": round(res.mean_class_accuracy, 4),
                       "skipped": len(res.skipped)}]))
    for file, problem in res.skipped:
        print(f"skipped {file}: {problem}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(res.to_dict(), indent=2))
        plot_confusion(res.confusion, res.classnames, out / "confusion.png", "zero-shot confusion")
        print(f"wrote {out / 'results.json'} and {out / 'confusion.png'}")
    return 0
