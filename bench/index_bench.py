"""Benchmark of the approximate (IVF) index that ``xmodal index`` builds past its size threshold.

Data: ``--n`` unit vectors of ``--dim`` dimensions from a mixture of ``--clusters`` Gaussian clusters
on the sphere (centre + spread * N(0, I/dim), renormalised; cluster sizes vary), queries drawn the same
way and not in the index. Measured in one run: the build time of the index through the same code
path as ``xmodal index`` (``xmodal.index.ann.build_ann``: k-means training, adding, the automatic
nprobe calibration), recall@10 against exact search for an nprobe sweep (nprobe=1 included),
single-query p50/p95 latency, and the speed-up over numpy brute force (``X @ q`` + argpartition)
timed on the same machine in the same run.

    python bench/index_bench.py                     # the acceptance run: 1,000,000 x 512
    python bench/index_bench.py --n 100000 --clusters 400 --nlist 1024   # a quick one
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


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
    p.add_argument("--clusters", type=int, default=4000, help="Gaussian clusters in the mixture")
    p.add_argument("--spread", type=float, default=1.5, help="noise norm relative to the unit centre")
    p.add_argument("--nlist", type=int, default=4096, help="IVF cells (0 = xmodal's automatic choice)")
    p.add_argument("--train", type=int, default=100_000, help="k-means training sample")
    p.add_argument("--queries", type=int, default=1000, help="queries for recall")
    p.add_argument("--timed", type=int, default=300, help="single queries timed per setting")
    p.add_argument("--brute", type=int, default=30, help="single queries timed for numpy brute force")
    p.add_argument("--nprobe", default="1,2,4,8,16,32,64", help="nprobe sweep")
    p.add_argument("--threads", type=int, default=0, help="FAISS threads (0 = all cores)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    import faiss

    from xmodal.index.ann import AnnConfig, build_ann, recall_at

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0, 0.5, args.clusters)
    weights /= weights.sum()
    x = sample(rng, centres, weights, args.n, args.spread)
    queries = sample(rng, centres, weights, args.queries, args.spread)
    print(f"data: {args.n} x {args.dim} from {args.clusters} clusters, spread {args.spread} "
          f"({time.perf_counter() - t0:.1f}s); {faiss.omp_get_max_threads()} threads")

    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(x)
    _, truth = flat.search(queries, 10)
    del flat
    print(f"exact ground truth for {args.queries} queries: {time.perf_counter() - t0:.1f}s")

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
    print(f"IVF build (train + add + nprobe calibration): {build_s:.1f}s; recorded params: {json.dumps(params)}")

    rows = [{"setting": "numpy brute force", "recall@10": brute_recall, "p50_ms": float(np.median(brute_ms)),
             "p95_ms": float(np.percentile(brute_ms, 95)), "speedup": 1.0}]
    for nprobe in [int(v) for v in args.nprobe.split(",")]:
        index.nprobe = nprobe
        _, found = index.search(queries, 10)
        ms = latency_ms(lambda q: index.search(q[None], 10), queries[: args.timed])
        rows.append({"setting": f"IVF{params['nlist']} nprobe={nprobe}" + (" (auto)" if nprobe == params["nprobe"] else ""),
                     "recall@10": recall_at(found, truth), "p50_ms": float(np.median(ms)),
                     "p95_ms": float(np.percentile(ms, 95)), "speedup": float(np.median(brute_ms) / np.median(ms))})
    print(f"\n{'setting':34s} {'recall@10':>9s} {'p50 ms':>8s} {'p95 ms':>8s} {'speed-up':>9s}")
    for r in rows:
        print(f"{r['setting']:34s} {r['recall@10']:9.4f} {r['p50_ms']:8.3f} {r['p95_ms']:8.3f} {r['speedup']:8.1f}x")
    print(f"build seconds: {build_s:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "build_seconds": build_s, "params": params, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
