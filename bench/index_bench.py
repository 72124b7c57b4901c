"""Benchmark of the approximate (IVF) index that ``xmodal index`` builds past its size threshold.

Data: ``--n`` unit vectors of ``--dim`` dimensions from a mixture of ``--clusters`` Gaussian clusters
on the sphere (centre + spread * N(0, I/dim), renormalised; cluster sizes vary), queries drawn the same
way and not in the index. Measured in one run: the build time of the index through the same code
path as ``xmodal index`` (``xmodal.index.ann.build_ann``: k-means training, adding, the automatic
nprobe calibration), recall@10 against exact search for an nprobe sweep (nprobe=1 included),
single-query p50/p95 latency, and the speed-up over numpy brute force (``X @ q`` + argpartition)
timed on the same machine in the same run.

The generator's spread is calibrated so that the cheapest setting (nprobe=1) is well under the 0.95
recall target: the sweep shows that the target needs the nprobe the index picks on its own. The row
of that automatic choice is marked ``<- AUTO``.

    python bench/index_bench.py --json bench/results/index_bench.json --md bench/results/index_bench.md
                                                    # the acceptance run: 1,000,000 x 512
    python bench/index_bench.py --n 100000 --clusters 200 --nlist 410 --train 10000   # same ratios, quick

``--section ivfpq`` benchmarks the compressed kind instead (``AnnConfig(kind="ivfpq")``, see
``bench/index_bench_pq.py``): recall@10 and bytes per vector in RAM and on disk against the flat
index, on ``--data spectral`` (clustered, decaying spectrum: like real embeddings) and ``--data
isotropic`` (no structure: the hard case), each run adding or replacing its own section of ``--md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


SPREAD = 1.6  # with 2000 clusters (~500 vectors, ~2 IVF4096 cells each): nprobe=1 well under 0.95 at 1M x 512


def sample(rng: np.random.Generator, centres: np.ndarray, weights: np.ndarray, n: int, spread: float,
           chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors: a centre picked by ``weights`` plus isotropic noise of norm ~``spread``."""
    d = centres.shape[1]
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[rng.choice(len(centres), m, p=weights)]
        x += rng.standard_normal((m, d), dtype=np.float32) * (spread / np.sqrt(d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start:start + m] = x
    return out


def latency_ms(fn, queries: np.ndarray) -> np.ndarray:
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t) * 1e3)
    return np.asarray(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="indexed vectors")
    p.add_argument("--dim", type=int, default=512, help="dimensions")
    p.add_argument("--clusters", type=int, default=2000, help="Gaussian clusters in the mixture")
    p.add_argument("--spread", type=float, help=f"noise norm relative to the unit centre (default {SPREAD}; "
                                                 "spectral data: index_bench_pq.SPECTRAL_SPREAD)")
    p.add_argument("--nlist", type=int, default=4096, help="IVF cells (0 = xmodal's automatic choice)")
    p.add_argument("--train", type=int, default=100_000, help="k-means training sample")
    p.add_argument("--queries", type=int, default=1000, help="queries for recall")
    p.add_argument("--timed", type=int, default=300, help="single queries timed per setting")
    p.add_argument("--brute", type=int, default=30, help="single queries timed for numpy brute force")
    p.add_argument("--nprobe", default="1,2,4,8,16,32,64", help="nprobe sweep")
    p.add_argument("--threads", type=int, default=0, help="FAISS threads (0 = all cores)")
    p.add_argument("--section", choices=["ivf", "ivfpq"], default="ivf", help="which index kind to benchmark")
    p.add_argument("--data", choices=["mixture", "spectral", "isotropic"], default="mixture",
                   help="generator: mixture (isotropic noise around cluster centres; the ivf section's), "
                        "spectral (clusters with a decaying spectrum), isotropic (uniform on the sphere)")
    p.add_argument("--rerank", type=int, default=100, help="ivfpq: candidates re-ranked exactly (0 = codes only)")
    p.add_argument("--pq-m", type=int, default=0, help="ivfpq: sub-quantizers (0 = xmodal's default, dim/8)")
    p.add_argument("--opq", action="store_true", help="ivfpq: learn an OPQ rotation first")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--md", help="also write the printed report here as markdown")
    args = p.parse_args()
    if args.spread is None:
        from index_bench_pq import SPECTRAL_SPREAD

        args.spread = SPECTRAL_SPREAD if args.data == "spectral" else SPREAD

    import faiss

    from xmodal.index.ann import AnnConfig, build_ann, recall_at

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    if args.section == "ivfpq":
        from index_bench_pq import run_pq

        return run_pq(args)
    rng = np.random.default_rng(0)
    t_start = t0 = time.perf_counter()
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0, 0.5, args.clusters)
    weights /= weights.sum()
    x = sample(rng, centres, weights, args.n, args.spread)
    queries = sample(rng, centres, weights, args.queries, args.spread)
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"data: {args.n} x {args.dim} from {args.clusters} clusters, spread {args.spread} "
          f"({time.perf_counter() - t0:.1f}s); {faiss.omp_get_max_threads()} threads")

    t0 = time.perf_counter()
    _, truth = faiss.knn(queries, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    say(f"exact ground truth for {args.queries} queries: {time.perf_counter() - t0:.1f}s")

    def brute(q: np.ndarray) -> np.ndarray:
        s = x @ q
        top = np.argpartition(-s, 10)[:10]
        return top[np.argsort(-s[top])]

    brute_ms = latency_ms(brute, queries[: args.brute])
    brute_recall = recall_at([brute(q) for q in queries[:50]], truth[:50])

    t0 = time.perf_counter()
    cfg = AnnConfig(exact_max=0, nlist=args.nlist, train_size=args.train)
    index, params = build_ann(np.arange(args.n, dtype=np.int64), x, cfg)
    build_s = time.perf_counter() - t0
    say(f"IVF build (train + add + nprobe calibration): {build_s:.1f}s")
    say(f"recorded params (ann.json): {json.dumps(params)}")

    rows = [{"setting": "numpy brute force", "recall@10": brute_recall, "p50_ms": float(np.median(brute_ms)),
             "p95_ms": float(np.percentile(brute_ms, 95)), "speedup": 1.0}]
    auto = params["nprobe"]
    sweep = sorted({int(v) for v in args.nprobe.split(",")} | {auto})
    for nprobe in sweep:
        index.nprobe = nprobe
        _, found = index.search(queries, 10)
        ms = latency_ms(lambda q: index.search(q[None], 10), queries[: args.timed])
        rows.append({"setting": f"IVF{params['nlist']} nprobe={nprobe}", "nprobe": nprobe, "auto": nprobe == auto,
                     "recall@10": recall_at(found, truth), "p50_ms": float(np.median(ms)),
                     "p95_ms": float(np.percentile(ms, 95)), "speedup": float(np.median(brute_ms) / np.median(ms))})
    say()
    say(f"{'setting':26s} {'recall@10':>9s} {'p50 ms':>8s} {'p95 ms':>8s} {'speed-up':>9s}")
    for r in rows:
        mark = "  <- AUTO (xmodal's calibrated choice)" if r.get("auto") else ""
        mark = mark or ("  <- cheapest setting" if r.get("nprobe") == 1 else "")
        say(f"{r['setting']:26s} {r['recall@10']:9.4f} {r['p50_ms']:8.3f} {r['p95_ms']:8.3f} {r['speedup']:8.1f}x{mark}")
    a = next(r for r in rows if r.get("auto"))
    cheap = next((r for r in rows if r.get("nprobe") == 1), None)
    ok = {"recall@10 >= 0.95": a["recall@10"] >= 0.95, "p50 <= 5 ms": a["p50_ms"] <= 5.0,
          "speed-up >= 20x": a["speedup"] >= 20.0}
    say()
    say(f"automatic choice: nprobe={auto} (calibration recall@10 {params['calibrated_recall_at_10']:.4f}, leave-one-out "
        f"on {params['calibration']['queries']} indexed vectors, aimed at {params['calibration']['aimed_at']}) -> "
        f"held-out recall@10 {a['recall@10']:.4f}, p50 {a['p50_ms']:.3f} ms, {a['speedup']:.1f}x over brute force")
    if cheap is not None:
        say(f"cheapest setting nprobe=1: recall@10 {cheap['recall@10']:.4f}")
    say(f"targets at the automatic choice: " + ", ".join(f"{k} {'OK' if v else 'MISSED'}" for k, v in ok.items()))
    say(f"build seconds: {build_s:.1f}; total run {time.perf_counter() - t_start:.0f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "build_seconds": build_s, "params": params, "rows": rows,
                       "auto": a, "targets_met": ok}, f, indent=2)
    if args.md:
        old = open(args.md).read() if os.path.exists(args.md) else ""
        sections = old[old.find("\n## "):] if "\n## " in old else ""  # other sections (ivfpq) are kept
        with open(args.md, "w") as f:
            f.write("# Index bench (issue #5)\n\n`python bench/index_bench.py " +
                    " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                             if v not in (None, False) and k not in ("json", "md")) +
                    "`\n\n```\n" + "\n".join(lines) + "\n```\n" + sections)


if __name__ == "__main__":
    main()
