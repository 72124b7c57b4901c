"""``xmodal bind`` and ``xmodal fuse``: thin subcommands over ``xmodal.bind`` and ``xmodal.fuse``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xmodal.cli.common import (build_config, fit_overrides, given, held_out_rows, load_model, manifest_args, model_help,
                               only_main, print_history, print_skipped, read_rows, start_run,
                               training_args, transferred_now)
from xmodal.cli.listing import list_action, registry_option


def _names(text: str | None) -> list[str] | None:
    """A comma-separated flag as a list of names (None when the flag was not given)."""
    return [c.strip() for c in text.split(",")] if text else None


def _levels(text: str) -> list[float]:
    from xmodal.errors import ConfigError

    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"--noise {text!r}: expected comma-separated numbers, e.g. 0,0.5,1") from None


# ---------------------------------------------------------------- bind
def bind_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help=model_help("the model holding the anchor tower") + ", or a transfer folder (RUN/model: its adapted "
                   "towers, frozen; its head must embed, e.g. --task retrieve)")
    manifest_args(p, "paired manifest (CSV/JSONL); rows with split 'train' if it has a split column", "val",
                  "run folder: log.jsonl, resumable state, model/")
    registry_option(p, "--modality", "modalities", "the new modality (default audio)")
    registry_option(p, "--encoder", "encoders", "encoder of the new modality (default audio_cnn)")
    p.add_argument("--hf-model", help="hf_audio: transformers AST/Whisper hub name or folder")
    registry_option(p, "--anchor", "modalities", "frozen tower to bind to (default image; video: frame-averaged)")
    p.add_argument("--columns", help="manifest columns 'new,anchor' (default audio,image)")
    p.add_argument("--list", action=list_action("encoders", "modalities"))
    training_args(p)


def bind(args: argparse.Namespace) -> int:
    from xmodal.binding.train import BindConfig, check_config
    from xmodal.binding.train import bind as run_bind

    base = given(args, "modality", "encoder", "anchor")
    if args.columns:
        base["columns"] = _names(args.columns)
    if args.hf_model:
        base["encoder_config"] = {"name_or_path": args.hf_model}
    align = given(args, "batch_size", "on_error")
    if fit_overrides(args):
        align["fit"] = fit_overrides(args)
    if align:
        base["align"] = align
    cfg = build_config(BindConfig, args, base)
    check_config(cfg)
    transferred = transferred_now(args.model)
    train, root = read_rows(args.train, "train")
    val = held_out_rows(args, "val")
    start_run(args, "bind", cfg, {"train": (train, root), "val": (val, root)}, cfg.align.seed, model=args.model)
    model = transferred if transferred is not None else load_model(args.model)
    result = run_bind(model, train, cfg, val_rows=val, root=root, out=args.out)
    if not only_main():
        return 0
    print_history(result.history)
    print_skipped(result.skipped)
    if result.spread:
        print("final embeddings of a training batch (evaluation mode): "
              + ", ".join(f"{k.removeprefix('eval_')} {v:.3f}" for k, v in result.spread.items()))
    print(f"cached {result.cached}; bound model ({', '.join(result.model.modalities)}) saved to {Path(args.out) / 'model'}")
    return 0


# ---------------------------------------------------------------- fuse
def fuse_args(p: argparse.ArgumentParser) -> None:
    from xmodal.catalog import list_modalities

    manifest_args(p, "manifest with one column per modality and a label column", "test",
                  "run folder: model/, results.json, robustness.png")
    registry_option(p, "--fusion", "fusions", "how the modalities are combined (default late)")
    p.add_argument("--modalities", help=f"comma-separated, of {', '.join(list_modalities())} (default image,audio)")
    p.add_argument("--columns", help="comma-separated manifest columns, one per modality (default: the modality names)")
    p.add_argument("--dropout", type=float, help="modality dropout probability during training (default 0.3)")
    p.add_argument("--noise", default="0,0.25,0.5,1", help="noise levels of the robustness curve (x input std)")
    p.add_argument("--list", action=list_action("fusions", "encoders"))
    training_args(p, batch_size=False)


def fuse(args: argparse.Namespace) -> int:
    from xmodal.eval.report import text_table
    from xmodal.fusion.evaluate import evaluate_fusion, plot_robustness
    from xmodal.fusion.train import FuseConfig, check_config
    from xmodal.data.manifest import check_rows
    from xmodal.fusion.train import fuse as run_fuse

    base = given(args, "fusion", "on_error", modality_dropout="dropout")
    if args.modalities:
        base["modalities"] = base["columns"] = _names(args.modalities)
    if args.columns:
        base["columns"] = _names(args.columns)
    if fit_overrides(args):
        base["fit"] = fit_overrides(args)
    cfg = build_config(FuseConfig, args, base)
    check_config(cfg)
    levels = _levels(args.noise)
    train, root = read_rows(args.train, "train")
    test, troot = read_rows(args.test, None) if args.test else read_rows(args.train, "test")
    for rows, source in ((train, args.train), (test, args.test or args.train)):
        check_rows(rows, source, [cfg.label_column])  # modality columns may be empty: a row without that input
    start_run(args, "fuse", cfg, {"train": (train, root), "test": (test, troot)}, cfg.seed)
    result = run_fuse(train, cfg, root=root, out=args.out)
    if not only_main():
        return 0
    print_history(result.history)
    print_skipped(result.skipped)
    ev = evaluate_fusion(result.model, test, cfg.columns, cfg.label_column, root=troot, noise_levels=levels,
                         on_error=cfg.on_error)
    rows = [{"modalities": k, "top1": round(v, 4), **{f"noise {lvl:g}": round(a, 4) for lvl, a in zip(levels, ev.noise[k])}}
            for k, v in ev.subsets.items()]
    print(text_table(rows))
    print_skipped(ev.skipped)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(ev.to_dict(), indent=2))
    plot_robustness(ev, out / "robustness.png", title=f"{cfg.fusion} fusion")
    print(f"model saved to {out / 'model'}; wrote {out / 'results.json'} and {out / 'robustness.png'}")
    return 0


COMMANDS = {  # name -> (flags, handler, help) of the subcommands above
    "bind": (bind_args, bind, "bind a new modality (audio, sensor series) to a frozen tower"),
    "fuse": (fuse_args, fuse, "train a fusion classifier; accuracy per modality subset and under noise"),
}
