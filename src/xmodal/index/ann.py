"""FAISS indexes over unit vectors (inner product = cosine): exact below a size, IVF above.

``build_ann`` picks the kind from the number of vectors: up to ``exact_max`` an exact flat index;
past it an inverted-file index (IVF, Jégou et al. 2011: k-means cells, search visits ``nprobe`` of
them) with ``nlist ≈ 4·sqrt(N)`` cells, and ``nprobe`` set to the smallest power of two that reaches
``target_recall`` recall@10 against exact search on a sample of the indexed vectors. The choice and
its parameters are returned as a dict that the index records next to the FAISS file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.errors import ConfigError


def faiss() -> Any:
    """The faiss module, or a ConfigError saying which extra to install."""
    try:
        import faiss as _faiss
    except ImportError:
        raise ConfigError('the vector index needs faiss: pip install -e ".[index]" (faiss-cpu)') from None
    return _faiss


@dataclass
class AnnConfig:
    exact_max: int = 50_000  # up to this many vectors: exact (flat) search; above: IVF
    nlist: int = 0  # IVF cells; 0 = about 4*sqrt(N), a power of two
    train_size: int = 100_000  # vectors sampled to train the IVF k-means
    kmeans_iters: int = 10  # k-means iterations when training the IVF cells
    target_recall: float = 0.95  # nprobe = smallest power of two reaching this recall@10 on a sample
    calib_queries: int = 200  # sampled indexed vectors used to pick nprobe
    seed: int = 0  # seed of the training / calibration samples


def auto_nlist(n: int) -> int:
    return int(2 ** round(math.log2(max(16.0, 4 * math.sqrt(n)))))


def build_ann(ids: np.ndarray, vecs: np.ndarray, cfg: AnnConfig) -> tuple[Any, dict[str, Any]]:
    """A FAISS index of ``vecs`` [N, D] (unit rows) under ``ids`` [N], and its recorded parameters."""
    fa = faiss()
    n, d = vecs.shape
    if n <= cfg.exact_max:
        index = fa.IndexIDMap2(fa.IndexFlatIP(d))
        index.add_with_ids(vecs, ids)
        return index, {"kind": "flat", "metric": "inner_product", "count": n, "dim": d}
    nlist = cfg.nlist or auto_nlist(n)
    index = train_ivf(vecs, nlist, cfg.train_size, cfg.seed, cfg.kmeans_iters)
    index.add_with_ids(vecs, ids)
    nprobe, recall = calibrate_nprobe(index, ids, vecs, cfg)
    index.nprobe = nprobe
    params = {"kind": "ivf", "metric": "inner_product", "count": n, "dim": d, "nlist": nlist,
              "nprobe": nprobe, "calibrated_recall_at_10": round(recall, 4), "trained_on": min(n, cfg.train_size)}
    return index, params


def train_ivf(vecs: np.ndarray, nlist: int, train_size: int, seed: int = 0, iters: int = 10) -> Any:
    """An empty ``IndexIVFFlat`` (inner product) whose ``nlist`` cells are trained on a sample."""
    fa = faiss()
    d = vecs.shape[1]
    rng = np.random.default_rng(seed)
    sample = vecs[np.sort(rng.choice(len(vecs), min(len(vecs), train_size), replace=False))]
    quantizer = fa.IndexFlatIP(d)
    index = fa.IndexIVFFlat(quantizer, d, nlist, fa.METRIC_INNER_PRODUCT)
    index.cp.min_points_per_centroid = 1  # small samples are fine; do not warn
    index.cp.niter = iters
    index.train(np.ascontiguousarray(sample))
    return index


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` (ids) present in the same row of ``found``."""
    return float(np.mean([len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth)]))


def calibrate_nprobe(index: Any, ids: np.ndarray, vecs: np.ndarray, cfg: AnnConfig, k: int = 10) -> tuple[int, float]:
    """Smallest power-of-two nprobe whose recall@k (queries: sampled indexed vectors, self excluded)
    reaches ``cfg.target_recall``; returns (nprobe, its recall)."""
    fa = faiss()
    rng = np.random.default_rng(cfg.seed + 1)
    pick = rng.choice(len(vecs), min(len(vecs), cfg.calib_queries), replace=False)
    queries = np.ascontiguousarray(vecs[pick])
    flat = fa.IndexFlatIP(vecs.shape[1])
    flat.add(vecs)
    _, truth = flat.search(queries, k + 1)
    self_ids = ids[pick]
    truth = [[t for t in row if t != s][:k] for row, s in zip(ids[truth], self_ids)]
    nprobe, recall = 1, 0.0
    while True:
        index.nprobe = nprobe
        _, found = index.search(queries, k + 1)
        recall = recall_at([[f for f in row if f != s][:k] for row, s in zip(found, self_ids)], truth)
        if recall >= cfg.target_recall or nprobe >= index.nlist:
            return nprobe, recall
        nprobe = min(2 * nprobe, index.nlist)


def save_ann(index: Any, path: Path) -> None:
    """Write a FAISS index atomically (temporary file, then rename)."""
    fa = faiss()
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fa.write_index(index, str(tmp))
    os.replace(tmp, path)


def load_ann(path: Path) -> Any:
    return faiss().read_index(str(path))
