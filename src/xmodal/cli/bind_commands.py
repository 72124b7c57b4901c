"""``xmodal bind`` and ``xmodal fuse``: thin subcommands over ``xmodal.bind`` and ``xmodal.fuse``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xmodal.cli.commands import _build_config, _config_args, _fit, _rows


def _print_history(history: Any) -> None:
    for record in history.epochs:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))


def _print_skipped(skipped: list[tuple[str, str]]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):")
        for file, problem in skipped:
            print(f"  {file}: {problem}")


# ---------------------------------------------------------------- bind
def bind_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint folder (or 'lit', a CLIP/SigLIP name) holding the anchor tower")
    p.add_argument("--train", required=True, help="paired manifest (CSV/JSONL); rows with split 'train' if it has a split column")
    p.add_argument("--val", help="validation manifest (default: rows of --train whose split is 'val')")
    p.add_argument("--out", required=True, help="run folder: log.jsonl, resumable state, model/")
    p.add_argument("--modality", help="the new modality (default audio)")
    p.add_argument("--encoder", help="audio_cnn (default), audio_transformer, hf_audio, series_cnn")
    p.add_argument("--hf-model", help="hf_audio: transformers AST/Whisper hub name or folder")
    p.add_argument("--anchor", help="frozen tower to bind to: image (default), video, text")
    p.add_argument("--columns", help="manifest columns 'new,anchor' (default audio,image)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--on-error", choices=["raise", "skip"], help="bad file: fail fast (default) or skip and count")
    _config_args(p)


def bind(args: argparse.Namespace) -> int:
    from xmodal.api import load
    from xmodal.binding.train import BindConfig
    from xmodal.binding.train import bind as run_bind

    base: dict[str, Any] = {k: v for k, v in (("modality", args.modality), ("encoder", args.encoder),
                                              ("anchor", args.anchor)) if v is not None}
    if args.columns:
        base["columns"] = [c.strip() for c in args.columns.split(",")]
    if args.hf_model:
        base["encoder_config"] = {"name_or_path": args.hf_model}
    align = {k: v for k, v in (("batch_size", args.batch_size), ("on_error", args.on_error)) if v is not None}
    if _fit(args):
        align["fit"] = _fit(args)
    if align:
        base["align"] = align
    cfg = _build_config(BindConfig, args, base)
    train, root = _rows(args.train, "train")
    if args.val:
        val = _rows(args.val, None)[0]
    else:  # the manifest's 'val' rows, if it has any
        val = [r for r in _rows(args.train, None)[0] if r.get("split") == "val"] or None
    result = run_bind(load(args.model), train, cfg, val_rows=val, root=root, out=args.out)
    _print_history(result.history)
    _print_skipped(result.skipped)
    print(f"cached {result.cached}; bound model ({', '.join(result.model.modalities)}) saved to {Path(args.out) / 'model'}")
    return 0


# ---------------------------------------------------------------- fuse
def fuse_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, help="manifest with one column per modality and a label column")
    p.add_argument("--test", help="test manifest (default: rows of --train whose split is 'test')")
    p.add_argument("--out", required=True, help="run folder: model/, results.json, robustness.png")
    p.add_argument("--fusion", help="early, late (default) or cross_attention")
    p.add_argument("--modalities", help="comma-separated modalities (default image,audio)")
    p.add_argument("--columns", help="comma-separated manifest columns, one per modality (default: the modality names)")
    p.add_argument("--dropout", type=float, help="modality dropout probability during training (default 0.3)")
    p.add_argument("--noise", default="0,0.25,0.5,1", help="noise levels of the robustness curve (x input std)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--on-error", choices=["raise", "skip"], help="bad file: fail fast (default) or skip and count")
    _config_args(p)


def fuse(args: argparse.Namespace) -> int:
    from xmodal.eval.report import text_table
    from xmodal.fusion.evaluate import evaluate_fusion, plot_robustness
    from xmodal.fusion.train import FuseConfig
    from xmodal.fusion.train import fuse as run_fuse

    base: dict[str, Any] = {k: v for k, v in (("fusion", args.fusion), ("modality_dropout", args.dropout),
                                              ("on_error", args.on_error)) if v is not None}
    if args.modalities:
        base["modalities"] = [m.strip() for m in args.modalities.split(",")]
        base["columns"] = base["modalities"]
    if args.columns:
        base["columns"] = [c.strip() for c in args.columns.split(",")]
    if _fit(args):
        base["fit"] = _fit(args)
    cfg = _build_config(FuseConfig, args, base)
    train, root = _rows(args.train, "train")
    test, troot = _rows(args.test, None) if args.test else _rows(args.train, "test")
    result = run_fuse(train, cfg, root=root, out=args.out)
    _print_history(result.history)
    _print_skipped(result.skipped)
    levels = [float(x) for x in args.noise.split(",")]
    ev = evaluate_fusion(result.model, test, cfg.columns, cfg.label_column, root=troot, noise_levels=levels,
                         on_error=cfg.on_error)
    rows = [{"modalities": k, "top1": round(v, 4), **{f"noise {lvl:g}": round(a, 4) for lvl, a in zip(levels, ev.noise[k])}}
            for k, v in ev.subsets.items()]
    print(text_table(rows))
    _print_skipped(ev.skipped)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(ev.to_dict(), indent=2))
    plot_robustness(ev, out / "robustness.png", title=f"{cfg.fusion} fusion")
    print(f"model saved to {out / 'model'}; wrote {out / 'results.json'} and {out / 'robustness.png'}")
    return 0
