"""What the subcommands share: config flags (``--config``, ``--set``), training flags, manifest
reading, and printing of a training history and of skipped files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from xmodal.config import apply_overrides, from_dict, load_yaml, to_dict

ON_ERROR = "bad file: fail fast (raise, default) or skip and count it"


def config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with settings (same keys as the config dataclass)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set align.fit.epochs=4 (repeatable)")


def out_arg(p: argparse.ArgumentParser, default: str, what: str) -> None:
    """``--out DIR`` with a default folder in the current one."""
    p.add_argument("--out", default=default, help=f"{what} (default: ./{default})")


def no_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def training_args(p: argparse.ArgumentParser, lr: str = "peak learning rate (default: the config's)",
                  batch_size: bool = True) -> None:
    """``--epochs``, ``--lr``, ``--batch-size``, ``--on-error``, ``--config``, ``--set`` of a training command."""
    p.add_argument("--epochs", type=int, help="training epochs (default: the config's)")
    p.add_argument("--lr", type=float, help=lr)
    if batch_size:
        p.add_argument("--batch-size", type=int, help="samples per batch (default: the config's)")
    p.add_argument("--on-error", choices=["raise", "skip"], help=ON_ERROR)
    precision_arg(p)
    config_args(p)


def precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast of the forward passes: fp32 (default), auto (bf16 on a GPU or a CPU with native "
                        "bf16, else fp32), bf16, or fp16 (GPU only, with loss scaling)")


def replicas_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replicas", type=int,
                   help="CPU: worker processes that each decode and embed whole batches on one thread, the model "
                        "shared (multi-instance inference; about one per core; default 1: every core on each batch)")


def manifest_args(p: argparse.ArgumentParser, train: str, held_out: str, out: str) -> None:
    """``--train MANIFEST``, ``--val`` or ``--test MANIFEST`` (``held_out``) and ``--out RUN``."""
    p.add_argument("--train", required=True, help=train)
    p.add_argument(f"--{held_out}", help=f"{held_out} manifest (default: rows of --train whose split is '{held_out}')")
    p.add_argument("--out", required=True, help=out)
    overwrite_arg(p)


def overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="start over in --out when it holds a run of other settings or data (default: refuse; "
                        "the same run resumes)")


def start_run(args: argparse.Namespace, command: str, cfg: Any, data: dict[str, tuple[Any, Any]], seed: int,
              model: str | None = None) -> None:
    """Check the run folder ``--out`` against this run's config, ``model`` and ``data`` (name -> (rows,
    root)), refusing another run's folder unless ``--overwrite``, record the run in it, then seed every
    RNG with ``seed`` (before any model is built, so that a new model's weights are reproducible). Under
    torchrun rank 0 opens the folder while the other ranks wait, and every rank gets its answer."""
    from xmodal.engine import distributed
    from xmodal.engine.checkpoint import seed_everything
    from xmodal.engine.runs import fingerprint, folder_fingerprint, open_run

    prints = {name: fingerprint(rows, root) for name, (rows, root) in data.items()}
    if model is not None:
        prints["model"] = folder_fingerprint(model)
    distributed.main_first(lambda: open_run(args.out, command, {"model": model, **to_dict(cfg)}, prints, args.overwrite))
    seed_everything(seed)


def only_main() -> bool:
    """Whether this process reports and writes the results (rank 0; always without torchrun)."""
    from xmodal.engine import distributed

    return distributed.is_main()


def model_help(what: str = "model") -> str:
    """Help of a ``--model`` flag: the names ``xmodal.load`` builds, checkpoint folders, hub names."""
    from xmodal.catalog import list_models

    names = ", ".join(repr(n) for n in list_models())
    return f"{what}: {names} (a new model), an xmodal checkpoint folder, or a transformers CLIP/SigLIP hub name or folder"


def load_model(name: str) -> Any:
    """``xmodal.load(name)``, transfer folders (``RUN/model``: their adapted video model) included; under
    torchrun on this rank's device (its GPU with NCCL)."""
    import xmodal.strategies.embedder  # noqa: F401  (registers transfer folders with xmodal.load, and their towers)
    from xmodal.api import load
    from xmodal.engine import distributed

    model = load(name)
    return model.to(distributed.device()) if distributed.active() else model


def transferred_now(name: str) -> Any:
    """A transfer folder ``name`` loaded now, so that one whose head only classifies is refused (one line) before
    any data is read or run folder written; None for other models (loaded after the run's seeding, which a new
    model's weights depend on)."""
    from xmodal.strategies.checkpoint import is_transfer

    return load_model(name) if is_transfer(name) else None


def needs_towers(name: str, command: str) -> None:
    """Refuse, in one line naming its base, a transfer folder as ``--model`` of a command that trains towers of
    a base model (align, transfer): call it before any data is read."""
    from xmodal.errors import ConfigError
    from xmodal.strategies.checkpoint import is_transfer, read_transfer_meta

    if is_transfer(name):
        base = read_transfer_meta(Path(name)).get("base", "")
        raise ConfigError(f"--model {name}: {command} trains towers of a base model and this is a transferred video model "
                          f"(index, search, serve, zeroshot and bind take it); give {command} its base model: {base}")


def build_config(cls: type, args: argparse.Namespace, base: dict[str, Any]) -> Any:
    """``cls`` from its defaults, then ``--config``, then the flags (``base``), then ``--set``."""
    data = to_dict(cls())
    if args.config:
        data = merge(data, load_yaml(args.config))
    data = merge(data, base)
    return from_dict(cls, apply_overrides(data, args.overrides))


def given(args: argparse.Namespace, *names: str, **renamed: str) -> dict[str, Any]:
    """Config key -> flag value of the flags given on the command line (``renamed``: key=flag attribute)."""
    pairs = [(n, n) for n in names] + list(renamed.items())
    return {key: getattr(args, attr) for key, attr in pairs if getattr(args, attr) is not None}


def fit_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The engine overrides (``fit.epochs``, ``fit.lr``, ``fit.precision``) given on the command line."""
    return given(args, "epochs", "lr", "precision")


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_rows(source: str, split: str | None, notice: bool = True) -> tuple[list[dict[str, Any]], Path]:
    """The rows of a manifest or folder (those whose ``split`` column is ``split``, if it has one) and its
    root; repeated identical rows are dropped, with a one-line notice on stderr (unless not ``notice``)."""
    from xmodal.data.manifest import load_media_manifest
    from xmodal.errors import DataError

    rows, root = load_media_manifest(source)
    rows = unique_rows(rows, source, notice)
    if split is not None and rows and "split" in rows[0]:
        rows = [r for r in rows if r.get("split") == split]
        if not rows:
            raise DataError(source, f"no rows with split {split!r}")
    return rows, root


def unique_rows(rows: list[dict[str, Any]], source: str, notice: bool = True) -> list[dict[str, Any]]:
    """``rows`` with repeated identical rows dropped, and a one-line notice on stderr counting them."""
    from xmodal.data.manifest import drop_duplicates

    rows, repeats = drop_duplicates(rows)
    if repeats and notice:
        print(f"xmodal: notice: {source}: {repeats} duplicate row(s) dropped (each row is used once)", file=sys.stderr)
    return rows


def held_out_rows(args: argparse.Namespace, split: str) -> list[dict[str, Any]] | None:
    """Every row of ``--<split>`` if given, else the ``--train`` rows whose split is ``split``; None if none."""
    if vars(args)[split]:
        return read_rows(vars(args)[split], None)[0] or None
    return [r for r in read_rows(args.train, None, notice=False)[0] if r.get("split") == split] or None


def column(rows: list[dict[str, Any]], name: str, source: str, text: bool = False, path: bool = False) -> list[Any]:
    """The values of column ``name``, after :func:`xmodal.data.manifest.check_rows` (``text``: as text,
    ``path``: as file paths)."""
    from xmodal.data.manifest import check_rows
    from xmodal.errors import DataError

    if not rows:
        raise DataError(source, "no rows")
    if name not in rows[0]:
        raise DataError(source, f"no column {name!r}; columns are {list(rows[0])}")
    check_rows(rows, source, [name], [name] if text else [], [name] if path else [])
    return [r[name] for r in rows]


def without_empty(rows: list[dict[str, Any]], name: str, source: str) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The rows with a value in column ``name`` and, for ``--on-error skip``, ``(where, problem)`` of the
    others (a row without that input is skipped and named, not fatal)."""
    kept, skipped = [], []
    for i, row in enumerate(rows):
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            skipped.append((f"{source} row {i}", f"empty value in column {name!r}"))
        else:
            kept.append(row)
    return kept, skipped


def check_out(args: argparse.Namespace) -> None:
    """A ConfigError, before any work, when the command's ``--out`` names an existing file (not a folder)."""
    from xmodal.errors import ConfigError

    out = vars(args).get("out")
    if out and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")


def print_history(history: Any) -> None:
    """One JSON line per epoch of an engine history."""
    for record in history.epochs:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))


def print_skipped(skipped: list[tuple[str, str]]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):")
        for file, problem in skipped:
            print(f"  {file}: {problem}")
