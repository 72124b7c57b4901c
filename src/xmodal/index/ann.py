"""FAISS indexes over unit vectors (inner product = cosine): exact below a size, IVF or IVF-PQ above.

``build_ann`` picks the kind from the number of vectors: up to ``exact_max`` an exact flat index;
past it ``AnnConfig.kind``: an inverted-file index (``ivf``, Jégou et al. 2011: k-means cells, search
visits ``nprobe`` of them, full vectors in RAM) or its compressed form (``ivfpq``, see
:mod:`xmodal.index.pq`: product-quantisation codes in RAM, optionally re-ranked exactly from the
vectors on disk), with ``nlist ≈ 4·sqrt(N)`` cells, and ``nprobe`` set to the smallest power of two
whose recall@10 against exact search reaches ``target_recall + calib_margin`` on calibration queries
(or past which doubling it gains less than ``calib_plateau``: compressed codes cap the recall).

Calibration queries are indexed vectors searched leave-one-out: each is searched for k+1 results
and its own id is dropped, from both the exact and the approximate answer. (An indexed vector is
its own nearest neighbour and sits in its own cell, so counting it would inflate recall against
queries that are not in the index.) They are drawn from vectors outside the k-means training sample
where there are enough, since the cells were fitted to the training vectors; the margin absorbs the
sampling error of the estimate. The choice and its parameters (the calibration recall included)
are returned as a dict that the index records next to the FAISS file (``ann.json``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.errors import ConfigError
from xmodal.index import pq
from xmodal.index.backend import faiss, training_sample


APPROXIMATE = {  # AnnConfig.kind -> what is built past exact_max (the CLI's --kind choices)
    "ivf": "IVF-Flat: full float32 vectors in RAM (4*dim bytes each)",
    "ivfpq": "IVF-PQ: compressed codes in RAM (~dim/8 bytes each), for corpora beyond RAM",
}


@dataclass
class AnnConfig:
    exact_max: int = 50_000  # up to this many vectors: exact (flat) search; above: the approximate `kind`
    kind: str = "ivf"  # index past exact_max: "ivf" (full vectors) or "ivfpq" (compressed codes; see pq.py)
    nlist: int = 0  # IVF cells; 0 = about 4*sqrt(N), a power of two
    train_size: int = 100_000  # vectors sampled to train the IVF k-means
    kmeans_iters: int = 10  # k-means iterations when training the IVF cells
    target_recall: float = 0.95  # recall@10 wanted for queries that are not in the index
    calib_margin: float = 0.015  # nprobe = smallest power of two reaching target_recall + this on calibration
    calib_queries: int = 1000  # indexed vectors (leave-one-out) used to pick nprobe
    seed: int = 0  # seed of the training / calibration samples
    calib_plateau: float = 0.002  # calibration also stops when doubling nprobe gains less recall than this
    pq_m: int = 0  # ivfpq: sub-quantizers (bytes per code at 8 bits; must divide dim); 0 = about dim/8
    pq_nbits: int = 8  # ivfpq: bits per sub-quantizer code (2**nbits centroids each)
    opq: bool = False  # ivfpq: learn an OPQ rotation first (Ge et al. 2013; slower training)
    opq_iters: int = 20  # ivfpq: OPQ alternating-optimisation iterations
    rerank: int = 100  # ivfpq: re-score this many best candidates exactly with the stored vectors (0 = off;
    # 64-byte codes alone: recall@10 0.58 at 1M x 512, re-ranking 100: 0.99; bench/results/index_bench.md)


def auto_nlist(n: int) -> int:
    return int(2 ** round(math.log2(max(16.0, 4 * math.sqrt(n)))))


def build_ann(ids: np.ndarray, vecs: np.ndarray, cfg: AnnConfig) -> tuple[Any, dict[str, Any]]:
    """A FAISS index of ``vecs`` [N, D] (unit rows) under ``ids`` [N], and its recorded parameters
    (an ivfpq index with ``rerank`` is calibrated re-ranking from ``vecs``, the stored vectors)."""
    fa = faiss()
    n, d = vecs.shape
    if n <= cfg.exact_max:
        index = fa.IndexIDMap2(fa.IndexFlatIP(d))
        index.add_with_ids(vecs, ids)
        return index, {"kind": "flat", "metric": "inner_product", "count": n, "dim": d}
    if cfg.kind not in APPROXIMATE:
        raise ConfigError(f"unknown index kind {cfg.kind!r}; choose from {list(APPROXIMATE)}")
    nlist = cfg.nlist or auto_nlist(n)
    params: dict[str, Any] = {"kind": cfg.kind, "metric": "inner_product", "count": n, "dim": d}
    if cfg.kind == "ivfpq":
        shape = pq.pq_shape(n, d, cfg, nlist)
        nlist = shape["nlist"]
        index = pq.train_ivfpq(vecs, shape, cfg)
        params.update(pq_m=shape["m"], pq_nbits=shape["nbits"], opq=cfg.opq, rerank=cfg.rerank)
    else:
        index = train_ivf(vecs, nlist, cfg.train_size, cfg.seed, cfg.kmeans_iters)
    index.add_with_ids(vecs, ids)
    calib = calibrate_nprobe(index, ids, vecs, cfg)
    set_nprobe(index, calib["nprobe"])
    params.update({"nlist": nlist, "nprobe": calib["nprobe"], "calibrated_recall_at_10": calib["recall"],
                   "trained_on": min(n, cfg.train_size),
                   "calibration": {"queries": calib["queries"], "self_excluded": True,
                                   "held_out_of_training": calib["held_out_of_training"],
                                   "target_recall": cfg.target_recall, "aimed_at": calib["aim"],
                                   "recall_by_nprobe": calib["by_nprobe"]}})
    return index, params


def set_nprobe(index: Any, nprobe: int) -> None:
    """Set the cells an IVF or IVF-PQ index visits per query."""
    faiss().extract_index_ivf(index).nprobe = nprobe


def train_ivf(vecs: np.ndarray, nlist: int, train_size: int, seed: int = 0, iters: int = 10) -> Any:
    """An empty ``IndexIVFFlat`` (inner product) whose ``nlist`` cells are trained on a sample."""
    fa = faiss()
    d = vecs.shape[1]
    sample = vecs[training_sample(len(vecs), train_size, seed)]
    quantizer = fa.IndexFlatIP(d)
    index = fa.IndexIVFFlat(quantizer, d, nlist, fa.METRIC_INNER_PRODUCT)
    index.cp.min_points_per_centroid = 1  # small samples are fine; do not warn
    index.cp.niter = iters
    index.train(np.ascontiguousarray(sample))
    return index


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` (ids) present in the same row of ``found``."""
    return float(np.mean([len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth)]))


def calibration_queries(n: int, cfg: AnnConfig) -> tuple[np.ndarray, bool]:
    """Positions of the indexed vectors used as calibration queries, preferring ones outside the
    k-means training sample; and whether all of them are outside it."""
    rng = np.random.default_rng(cfg.seed + 1)
    want = min(n, cfg.calib_queries)
    outside = np.setdiff1d(np.arange(n), training_sample(n, cfg.train_size, cfg.seed), assume_unique=True)
    if len(outside) >= want:
        return np.sort(rng.choice(outside, want, replace=False)), True
    return np.sort(rng.choice(n, want, replace=False)), False


def leave_one_out(found_ids: np.ndarray, self_ids: np.ndarray, k: int) -> list[list[int]]:
    """Each row of ``found_ids`` (k+1 ids per query) without the query's own id, cut to ``k``."""
    return [[int(f) for f in row if f != s and f >= 0][:k] for row, s in zip(found_ids, self_ids)]


def calibrate_nprobe(index: Any, ids: np.ndarray, vecs: np.ndarray, cfg: AnnConfig, k: int = 10,
                     fetch: Any = None) -> dict[str, Any]:
    """Smallest power-of-two nprobe whose leave-one-out recall@k reaches ``target_recall + calib_margin``
    (capped at 1), or past which doubling gains less than ``calib_plateau``. Searches as the index will
    (re-ranking ``cfg.rerank`` candidates of an ivfpq index through ``fetch``, default: ``vecs``).
    Returns nprobe, its recall, the aim, the number of queries, whether they are all outside the
    training sample, and the recall of every nprobe tried."""
    fa = faiss()
    pick, held_out = calibration_queries(len(vecs), cfg)
    queries = np.ascontiguousarray(vecs[pick])
    self_ids = ids[pick]
    _, truth_pos = fa.knn(queries, np.ascontiguousarray(vecs), k + 1, metric=fa.METRIC_INNER_PRODUCT)
    truth = leave_one_out(ids[truth_pos], self_ids, k)
    aim = min(1.0, cfg.target_recall + cfg.calib_margin)
    ivf, rerank = fa.extract_index_ivf(index), cfg.rerank if cfg.kind == "ivfpq" else 0
    fetch = fetch or pq.fetch_from(ids, vecs)
    nprobe, by_nprobe, last = 1, {}, -1.0
    while True:
        ivf.nprobe = nprobe
        _, found = pq.search(index, queries, k + 1, rerank, fetch)
        recall = round(recall_at(leave_one_out(found, self_ids, k), truth), 4)
        by_nprobe[str(nprobe)] = recall
        if recall >= aim or nprobe >= ivf.nlist or recall - last < cfg.calib_plateau:
            return {"nprobe": nprobe, "recall": recall, "aim": round(aim, 4), "queries": len(pick),
                    "held_out_of_training": held_out, "by_nprobe": by_nprobe}
        nprobe, last = min(2 * nprobe, ivf.nlist), recall


def save_ann(index: Any, path: Path) -> None:
    """Write a FAISS index atomically (temporary file, then rename)."""
    fa = faiss()
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fa.write_index(index, str(tmp))
    os.replace(tmp, path)


def load_ann(path: Path) -> Any:
    return faiss().read_index(str(path))
