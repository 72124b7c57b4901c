"""The ``--section ivfpq`` part of ``bench/index_bench.py``: the compressed index kind (IVF-PQ).

Measured in one run, through the code path of ``xmodal index --kind ivfpq``
(``xmodal.index.ann.build_ann`` with ``AnnConfig(kind="ivfpq")``: coarse k-means and PQ codebooks
trained on ``--train`` sampled vectors, adding, the automatic nprobe calibration):

- recall@10 of held-out queries (not in the index) against exact search, for an nprobe sweep, with
  the codes alone and with the ``--rerank`` best candidates re-scored exactly from the full vectors,
  read from a float32 memory-mapped file on disk (what ``index.sqlite`` is to an xmodal index);
- bytes per vector: in RAM (codes + ids + inverted-list headers + centroids + codebooks, counted
  from the index, and the process's resident-memory growth when the FAISS file is loaded, measured),
  on disk (the FAISS file; the re-ranking vectors are the store's, kept for every kind), against the
  flat index's ``4 * dim`` bytes of float32 per vector;
- single-query p50 latency (re-ranking included), and the build time.

Data (``--data``): ``spectral``, a mixture of ``--clusters`` clusters whose centres and spreads follow
one power-law spectrum (variance of the i-th of ``dim`` random orthogonal directions ~ 1/i, so a few
tens of directions carry most of the variance, as in real CLIP embeddings; cluster noise of norm
``--spread`` relative to the unit centre; renormalised to the sphere); ``isotropic``, uniform on the
sphere (no structure: PQ's worst case, reported for transparency); ``mixture``, the ivf section's.
The parameters are fixed in advance, not tuned to the result.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ALPHA = 1.0  # spectral: variance of the i-th direction ~ i**-ALPHA
SPECTRAL_SPREAD = 0.8  # spectral: cluster noise norm relative to the unit centre (the default --spread there)


def spectral_world(rng: np.random.Generator, d: int, clusters: int) -> dict[str, np.ndarray]:
    scale = (np.arange(1, d + 1) ** (-ALPHA / 2)).astype(np.float32)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
    centres = (rng.standard_normal((clusters, d), dtype=np.float32) * scale) @ basis.T
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0, 0.5, clusters)
    return {"scale": scale, "basis": basis, "centres": centres, "weights": weights / weights.sum()}


def spectral(rng: np.random.Generator, world: dict[str, np.ndarray], n: int, spread: float,
             chunk: int = 100_000) -> np.ndarray:
    d = world["basis"].shape[0]
    norm = float(np.sqrt((world["scale"] ** 2).sum()))
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = world["centres"][rng.choice(len(world["centres"]), m, p=world["weights"])]
        x += (spread / norm) * ((rng.standard_normal((m, d), dtype=np.float32) * world["scale"]) @ world["basis"].T)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def isotropic(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_data(args, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """(indexed vectors, held-out queries, a one-line description)."""
    if args.data == "isotropic":
        return isotropic(rng, args.n, args.dim), isotropic(rng, args.queries, args.dim), "isotropic on the sphere"
    if args.data == "spectral":
        spread = args.spread
        world = spectral_world(rng, args.dim, args.clusters)
        return (spectral(rng, world, args.n, spread), spectral(rng, world, args.queries, spread),
                f"{args.clusters} clusters, spectrum i^-{ALPHA}, spread {spread}")
    from index_bench import sample

    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0, 0.5, args.clusters)
    weights /= weights.sum()
    return (sample(rng, centres, weights, args.n, args.spread), sample(rng, centres, weights, args.queries, args.spread),
            f"{args.clusters} clusters (isotropic noise), spread {args.spread}")


RSS_ON_LOAD = """
import sys, faiss
def rss():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmRSS:"))
before = rss(); index = faiss.read_index(sys.argv[1]); print(rss() - before)
"""


def measure_bytes(index, folder: Path, n: int, d: int) -> dict[str, float]:
    """Bytes per vector: counted parts in RAM, the resident-memory growth of a fresh process loading
    the file (measured), the file on disk."""
    import subprocess
    import sys

    from xmodal.index import pq
    from xmodal.index.ann import save_ann

    parts = pq.memory_bytes(index)
    file = folder / "ann.faiss"
    save_ann(index, file)
    grown = int(subprocess.run([sys.executable, "-c", RSS_ON_LOAD, str(file)], capture_output=True, text=True,
                               check=True).stdout)
    return {"ram_counted": sum(parts.values()) / n, "ram_codes_ids": (parts["codes"] + parts["ids"]) / n,
            "ram_rss_on_load": grown / n, "disk_faiss_file": file.stat().st_size / n, "flat": 4.0 * d,
            "parts_total_bytes": parts}


def sweep(index, params, queries, truth, fetch, args) -> list[dict]:
    from index_bench import latency_ms
    from xmodal.index import pq
    from xmodal.index.ann import recall_at, set_nprobe

    auto, rows = params["nprobe"], []
    for nprobe in sorted({int(v) for v in args.nprobe.split(",")} | {auto}):
        set_nprobe(index, nprobe)
        _, codes = pq.search(index, queries, 10)
        _, exact = pq.search(index, queries, 10, args.rerank, fetch)
        ms = latency_ms(lambda q: pq.search(index, q[None], 10, args.rerank, fetch), queries[: args.timed])
        rows.append({"nprobe": nprobe, "auto": nprobe == auto, "recall@10_codes": recall_at(codes, truth),
                     "recall@10_reranked": recall_at(exact, truth), "p50_ms": float(np.median(ms)),
                     "p95_ms": float(np.percentile(ms, 95))})
    set_nprobe(index, auto)
    return rows


def build(x: np.ndarray, args):
    from xmodal.index.ann import AnnConfig, build_ann

    cfg = AnnConfig(exact_max=0, kind="ivfpq", nlist=args.nlist, train_size=args.train, pq_m=args.pq_m,
                    opq=args.opq, rerank=args.rerank)
    t0 = time.perf_counter()
    index, params = build_ann(np.arange(len(x), dtype=np.int64), x, cfg)
    return index, params, time.perf_counter() - t0


def run_pq(args) -> None:
    import faiss

    from xmodal.index import pq

    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    t_start = t0 = time.perf_counter()
    x, queries, what = make_data(args, np.random.default_rng(0))
    say(f"data: {args.n} x {args.dim}, {what} ({time.perf_counter() - t0:.1f}s); "
        f"{faiss.omp_get_max_threads()} threads")
    t0 = time.perf_counter()
    _, truth = faiss.knn(queries, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    say(f"exact ground truth for {args.queries} held-out queries: {time.perf_counter() - t0:.1f}s")
    index, params, build_s = build(x, args)
    say(f"IVF-PQ build (train on {params['trained_on']} + add + nprobe calibration): {build_s:.1f}s")
    say(f"recorded params (ann.json): {json.dumps(params)}")
    with tempfile.TemporaryDirectory(dir=os.environ.get("XMODAL_BENCH_TMP")) as tmp:
        sizes = measure_bytes(index, Path(tmp), args.n, args.dim)
        vec_file = Path(tmp) / "vectors.f32"  # the re-ranking source on disk (index.sqlite's role)
        x.tofile(vec_file)
        fetch = pq.fetch_from(np.arange(args.n), np.memmap(vec_file, np.float32, "r", shape=x.shape))
        del x
        rows = sweep(index, params, queries, truth, fetch, args)
    report(say, args, params, sizes, rows, build_s)
    say(f"total run {time.perf_counter() - t_start:.0f}s")
    write(args, lines, {"args": vars(args), "build_seconds": build_s, "params": params, "bytes_per_vector": sizes,
                        "rows": rows})


def report(say, args, params, sizes, rows, build_s) -> None:
    say()
    say(f"{'setting':28s} {'recall@10 codes':>15s} {'reranked':>9s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for r in rows:
        mark = "  <- AUTO (calibrated)" if r["auto"] else ""
        say(f"{'IVF%d,PQ%d nprobe=%d' % (params['nlist'], params['pq_m'], r['nprobe']):28s} "
            f"{r['recall@10_codes']:15.4f} {r['recall@10_reranked']:9.4f} {r['p50_ms']:8.3f} {r['p95_ms']:8.3f}{mark}")
    flat = sizes["flat"]
    say()
    say(f"bytes/vector: flat index {flat:.0f} (float32 vectors; ids extra); IVF-PQ in RAM {sizes['ram_counted']:.1f} "
        f"counted (codes+ids {sizes['ram_codes_ids']:.0f}, + lists, centroids, codebooks) = 1/{flat / sizes['ram_counted']:.1f} "
        f"of flat; resident growth of a process loading the file {sizes['ram_rss_on_load']:.1f}; FAISS file on disk "
        f"{sizes['disk_faiss_file']:.1f}")
    say(f"re-ranking (rerank={args.rerank}) reads the {args.rerank} candidates' full vectors from disk: "
        f"{4 * args.dim} B/vector float32 that the index store (index.sqlite) keeps for every kind")
    a = next(r for r in rows if r["auto"])
    recall = a["recall@10_reranked"] if args.rerank > 10 else a["recall@10_codes"]
    ok = {"recall@10 >= 0.90": recall >= 0.90, "RAM <= 1/16 of flat": sizes["ram_counted"] <= flat / 16}
    say(f"automatic choice nprobe={params['nprobe']}: held-out recall@10 {recall:.4f} "
        f"(codes alone {a['recall@10_codes']:.4f}), p50 {a['p50_ms']:.3f} ms")
    say("targets: " + ", ".join(f"{k} {'OK' if v else 'MISSED'}" for k, v in ok.items()) + f"; build {build_s:.1f}s")


def write(args, lines: list[str], result: dict) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.md:
        command = "python bench/index_bench.py " + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in vars(args).items()
            if v is not None and v is not False and k not in ("json", "md"))
        heading = f"## IVF-PQ, {args.data} data (issue #13)"
        body = f"{heading}\n\n`{command}`\n\n```\n" + "\n".join(lines) + "\n```\n"
        upsert_section(Path(args.md), heading, body)


def upsert_section(md: Path, heading: str, body: str) -> None:
    """Replace the ``heading`` section of ``md`` with ``body`` (or append it), keeping the rest."""
    text = md.read_text() if md.is_file() else ""
    start = text.find(heading + "\n")
    if start < 0:
        md.write_text(text.rstrip("\n") + "\n\n" + body if text else body)
        return
    end = text.find("\n## ", start + len(heading))
    md.write_text(text[:start] + body + ("\n" + text[end + 1:] if end >= 0 else ""))
