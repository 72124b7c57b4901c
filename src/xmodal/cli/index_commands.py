"""``xmodal index`` / ``xmodal search`` / ``xmodal serve``: thin commands over :class:`xmodal.Index`.

Under torchrun (``torchrun --nproc-per-node N -m xmodal index PATH... --model M --out IX``) rank r builds
shard ``r/N`` into its own index folder beside ``--out`` (``.IX.rank<r>-of-<N>``, kept: the next run only
embeds what changed), and rank 0 merges the N shards into a fresh ``--out`` (the shards are the state;
the merged index is rebuilt from them each run, so a file deleted from the sources leaves it too).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from xmodal.cli.common import build_config, config_args, given, no_progress_arg, precision_arg, replicas_arg
from xmodal.errors import ConfigError
from xmodal.index.ann import APPROXIMATE, AnnConfig

MAX_LISTED = 20  # skipped files printed one per line; the rest are counted


def backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="run the model in PyTorch (default) or export its encoders to ONNX (INDEX/onnx) and run them "
                        "in onnxruntime (same vectors to 1e-4; needs the onnx extra)")


# ---------------------------------------------------------------- index
def index_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="media folders or manifests (.csv/.jsonl); with --merge: shard index folders")
    p.add_argument("--out", required=True, help="index folder (created, or brought up to date)")
    p.add_argument("--model", help="model name, checkpoint folder or transfer folder (RUN/model: its adapted video "
                                   "model) (default: the one the index was built with)")
    backend_arg(p)
    p.add_argument("--shard", help="i/n: index only the i-th of n disjoint parts (merge them with --merge)")
    p.add_argument("--merge", action="store_true", help="merge the shard indexes PATH... into --out")
    p.add_argument("--repair", action="store_true",
                   help="rebuild the search files of --out from its rows (after a damaged-file error)")
    p.add_argument("--prune", action="store_true",
                   help="drop the rows of a folder that is now empty or lost over half its files (else refused)")
    p.add_argument("--workers", type=int, help="parallel data-loading processes (default 0)")
    p.add_argument("--kind", choices=list(APPROXIMATE),
                   help=f"index past {AnnConfig().exact_max:,} files of a modality (default: the recorded one, else ivf): "
                        + "; ".join(f"{k}: {v}" for k, v in APPROXIMATE.items()))
    p.add_argument("--batch-size", type=int, help="files per forward pass (default 32)")
    precision_arg(p)
    replicas_arg(p)
    no_progress_arg(p)
    config_args(p)


def index(args: argparse.Namespace) -> int:
    from xmodal.index import BuildConfig, Index

    if args.repair:
        fixed = Index.repair(args.out)
        print(f"repaired {args.out}: rebuilt the search files of {len(fixed)} rows ({', '.join(fixed.anns) or 'none'})")
        fixed.close()
        if not args.paths:
            return 0
    if not args.paths:
        raise ConfigError("give the media folders or manifests to index (or --repair alone)")
    if args.merge:
        idx = Index.merged(args.paths, args.out, model=args.model)
        print(f"merged {len(args.paths)} shard(s) into {args.out}: {len(idx)} files")
        idx.close()  # (the store's write-ahead log goes into index.sqlite: the folder is complete on its own)
        return 0
    base: dict[str, Any] = {"progress": not args.no_progress, "prune": args.prune,
                            **given(args, "shard", "workers", "batch_size", "precision", "replicas")}
    cfg = build_config(BuildConfig, args, base)
    model = args.model
    if _ranks() > 1 and not args.shard:
        return _index_ranks(args, cfg)
    if model is None and not (Path(args.out) / "index.sqlite").is_file():
        raise ConfigError("--model is required for a new index")
    idx = Index.build(args.paths, model=model, out=args.out, config=cfg, ann_cfg=_ann_config(args),
                      backend=args.backend)
    _report(args.out, idx)
    idx.close()  # (the store's write-ahead log goes into index.sqlite: the folder is complete on its own)
    return 0


def _ann_config(args: argparse.Namespace) -> Any:
    """The search-file settings ``--kind`` asks for (None: the index's recorded ones, or the defaults)."""
    return AnnConfig(kind=args.kind) if args.kind else None


def _ranks() -> int:
    from xmodal.engine import distributed

    return distributed.world()


def _index_ranks(args: argparse.Namespace, cfg: Any) -> int:
    """Under torchrun: this rank's shard into its own folder, then rank 0 merges them into ``--out``."""
    import dataclasses

    from xmodal.engine import distributed
    from xmodal.index import Index

    out, rank, n = Path(args.out), distributed.rank(), distributed.world()
    shards = [out.parent / f".{out.name}.rank{r}-of-{n}" for r in range(n)]
    if args.model is None and not (shards[rank] / "index.sqlite").is_file():
        raise ConfigError(f"--model is required for a new index (no shard {shards[rank]} to update)")
    idx = Index.build(args.paths, model=args.model, out=shards[rank],
                      config=dataclasses.replace(cfg, shard=f"{rank}/{n}", progress=cfg.progress and rank == 0),
                      ann_cfg=_ann_config(args), backend=args.backend)
    idx.close()
    distributed.barrier()
    distributed.main_first(lambda: _merge_shards(shards, out, args.model, _ann_config(args)))  # rank 0 merges, the others wait
    return 0


def _merge_shards(shards: list[Path], out: Path, model: str | None, ann_cfg: Any = None) -> None:
    """Merge the shard indexes into a fresh index that replaces ``out`` (an index folder, or none yet)."""
    import shutil

    from xmodal.index import Index

    if out.exists() and any(out.iterdir()) and not (out / "index.sqlite").is_file():
        raise ConfigError(f"--out {out}: a folder that is not an xmodal index; choose another --out")
    fresh = out.parent / f".{out.name}.merged"
    shutil.rmtree(fresh, ignore_errors=True)
    Index.merged(shards, fresh, model=model, ann_cfg=ann_cfg).close()
    shutil.rmtree(out, ignore_errors=True)
    os.replace(fresh, out)
    merged = Index.load(out, model=model)
    print(f"{out}: {len(merged)} files merged from {len(shards)} shards ({', '.join(str(s) for s in shards)})")
    merged.close()


def _report(out: str, idx: Any) -> None:
    """What a build did: counts, rate, each modality's search parameters, the skipped files."""
    r = idx.last_report
    rate = r.embedded / r.seconds if r.seconds else 0.0
    print(f"{out}: {len(idx)} files; embedded {r.embedded} ({rate:.1f} files/s), unchanged {r.unchanged}, "
          f"touched {r.touched}, deleted {r.deleted}, skipped {len(r.skipped)} in {r.seconds:.1f}s")
    for m, params in idx.stats()["modalities"].items():
        print(f"  {m}: {params}")
    for path, problem in r.skipped[:MAX_LISTED]:
        print(f"  skipped {path}: {problem}")
    if len(r.skipped) > MAX_LISTED:
        print(f"  ... and {len(r.skipped) - MAX_LISTED} more skipped")


# ---------------------------------------------------------------- search
def search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", metavar="INDEX", help="index folder written by `xmodal index`")
    p.add_argument("text", nargs="?", help="text query")
    for m in ("image", "video", "audio"):
        p.add_argument(f"--{m}", metavar="FILE", help=f"query by example: a {m} file")
    p.add_argument("-k", "--top", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--modality", choices=("image", "video", "audio"), action="append",
                   help="only results of this modality (repeatable)")
    p.add_argument("--model", help="model to embed the query (default: the one the index was built with)")
    backend_arg(p)
    p.add_argument("--json", action="store_true", help="print results as JSON")


def search(args: argparse.Namespace) -> int:
    from xmodal.errors import DataError
    from xmodal.index import Index
    from xmodal.modalities.text import check_text

    examples = [(m, getattr(args, m)) for m in ("image", "video", "audio") if getattr(args, m)]
    if (args.text is not None) + len(examples) != 1:
        raise ConfigError("give exactly one query: TEXT, --image FILE, --video FILE or --audio FILE")
    if args.text is not None:
        check_text(args.text, "query")
    idx = Index.load(args.index, model=args.model, backend=args.backend)
    if examples:
        modality, file = examples[0]
        if not Path(file).is_file():
            raise DataError(file, "no such file")
        hits = idx.search(Path(file), k=args.top, modality=args.modality, query_modality=modality)
    else:
        hits = idx.search(args.text, k=args.top, modality=args.modality)
    if args.json:
        print(json.dumps([asdict(h) for h in hits], indent=2))
        return 0
    for rank, h in enumerate(hits, 1):
        print(f"{rank:3d}  {h.score:.4f}  {h.modality:5s}  {h.path}")
    return 0


# ---------------------------------------------------------------- serve
def serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", metavar="INDEX", help="index folder written by `xmodal index`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", help="model to embed queries (default: the one the index was built with)")
    backend_arg(p)
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest query upload, MB (default 20)")
    p.add_argument("--max-batch", type=int, default=64,
                   help="most concurrent text queries embedded in one forward pass (default 64; 1 = no batching)")
    p.add_argument("--batch-wait-ms", type=float, default=20.0,
                   help="a text batch stays open while queries arrive less than this apart, 10x at most (default 20)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for this host name (repeatable; localhost, 127.0.0.1 and [::1] "
                        "always are; --host's own address is added)")


def serve(args: argparse.Namespace) -> int:
    from xmodal.index import Index
    from xmodal.serve import ServeConfig, create_app, run_server

    idx = Index.load(args.index, model=args.model, backend=args.backend)
    hosts = list(args.allow_host) + ([args.host] if args.host not in ("0.0.0.0", "::", "") else [])
    app = create_app(idx, ServeConfig(max_upload_bytes=int(args.max_upload_mb * 1e6), allow_hosts=hosts,
                                      max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms))
    print(f"serving {args.index} ({len(idx)} files) on http://{args.host}:{args.port}/")
    run_server(app, args.host, args.port)
    return 0


COMMANDS = {  # name -> (flags, handler, help) of the subcommands above
    "index": (index_args, index, "build or update a searchable index of media files"),
    "search": (search_args, search, "search an index by text or by an example file"),
    "serve": (serve_args, serve, "a local web page to search an index"),
}
