"""``xmodal embed``: the vectors of a manifest's files (or strings) by any model, transfer folders included."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xmodal.cli.common import (column, load_model, model_help, no_progress_arg, precision_arg, print_skipped, read_rows,
                               replicas_arg)
from xmodal.cli.index_commands import backend_arg
from xmodal.cli.listing import registry_option


def embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help=model_help() + ", or a transfer folder (RUN/model)")
    p.add_argument("--data", required=True, help="manifest (CSV/JSONL) or folder of class folders")
    p.add_argument("--split", help="only rows whose 'split' column has this value")
    p.add_argument("--column", default="path", help="manifest column with the items (default: path)")
    registry_option(p, "--modality", "modalities", "modality of the items (default image)", default="image")
    p.add_argument("--out", required=True, help="folder: vectors.npy ([N, D] float32, L2-normalised), items.json "
                                                "(the item of each row, skipped files), onnx/ (--backend onnx)")
    p.add_argument("--batch-size", type=int, default=64, help="items per forward pass (default 64)")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    backend_arg(p)
    precision_arg(p)
    replicas_arg(p)
    no_progress_arg(p)


def embed(args: argparse.Namespace) -> int:
    import numpy as np

    from xmodal.exporters.runtime import with_backend
    from xmodal.modalities import MODALITIES
    from xmodal.tasks.embed import embed as run_embed

    rows, root = read_rows(args.data, args.split)
    items = column(rows, args.column, args.data, text=not MODALITIES.get(args.modality).is_file,
                   path=MODALITIES.get(args.modality).is_file)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = with_backend(load_model(args.model), args.backend, out / "onnx")
    res = run_embed(model, args.modality, items, root=root, batch_size=args.batch_size, on_error=args.on_error,
                    progress=not args.no_progress, precision=args.precision or "fp32", replicas=args.replicas or 1)
    np.save(out / "vectors.npy", res.vectors.numpy().astype(np.float32))
    kept = [items[i] for i in res.kept]
    (out / "items.json").write_text(json.dumps({"model": args.model, "modality": args.modality, "backend": args.backend,
                                                "items": kept, "skipped": [list(s) for s in res.skipped]}, indent=2))
    print(f"embedded {len(kept)} {args.modality} item(s) -> {out / 'vectors.npy'} {tuple(res.vectors.shape)} "
          f"({args.backend}); rows in {out / 'items.json'}")
    print_skipped(res.skipped)
    return 0


COMMANDS = {"embed": (embed_args, embed, "embed a manifest's files (or texts) with a model: vectors.npy")}
