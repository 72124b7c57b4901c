"""IVF-PQ: the compressed index kind, for corpora whose vectors do not fit in RAM.

Each vector is kept as a product-quantisation code (Jégou, Douze & Schmid 2011, "Product
quantization for nearest neighbor search"): its residual to its IVF cell's centroid is cut into
``m`` sub-vectors, each replaced by the index (``nbits`` bits) of its nearest of ``2**nbits``
sub-centroids, so a 512-d float32 vector (2048 B) becomes ``m`` = 64 bytes plus its 8-byte id. An
optional OPQ rotation (Ge et al. 2013, "Optimized product quantization") is learned first, which
balances the variance between sub-vectors. Optionally the ``rerank`` best candidates by code are
re-scored exactly with their full vectors read from disk (the index store keeps them anyway), so
RAM holds only the codes while the final order is exact.

The coarse cells and the codebooks are trained on a sample (``AnnConfig.train_size``), like IVF.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from xmodal.errors import ConfigError
from xmodal.index.backend import faiss, training_sample

Fetch = Callable[[np.ndarray], np.ndarray]  # ids [R] -> their full vectors [R, D] (float32)


def auto_m(dim: int) -> int:
    """Default number of sub-quantizers: the largest divisor of ``dim`` not above ``dim / 8``
    (codes of about dim/8 bytes at 8 bits: 1/32 of float32, leaving room for ids under 1/16)."""
    return max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)


def pq_shape(n: int, dim: int, cfg: Any, nlist: int) -> dict[str, int]:
    """``m``, ``nbits`` and ``nlist`` for ``n`` vectors under ``cfg`` (an ``AnnConfig``): ``m`` must divide
    ``dim``, and a small set gets fewer bits and cells (k-means needs as many training vectors as centroids)."""
    m = cfg.pq_m or auto_m(dim)
    if dim % m:
        raise ConfigError(f"pq_m={m} does not divide the dimension {dim}")
    trained = min(n, cfg.train_size)
    nbits = max(1, min(cfg.pq_nbits, int(np.log2(max(2, trained)))))
    return {"m": m, "nbits": nbits, "nlist": max(1, min(nlist, trained))}


def train_ivfpq(vecs: np.ndarray, shape: dict[str, int], cfg: Any) -> Any:
    """An empty IVF-PQ index (inner product; behind an OPQ rotation if ``cfg.opq``) trained on a sample
    (``cfg``: an ``AnnConfig``)."""
    fa = faiss()
    d = vecs.shape[1]
    sample = np.ascontiguousarray(vecs[training_sample(len(vecs), cfg.train_size, cfg.seed)])
    spec = f"IVF{shape['nlist']},PQ{shape['m']}x{shape['nbits']}np"  # np: no polysemous training (slow, unused)
    index = fa.index_factory(d, f"OPQ{shape['m']}," * cfg.opq + spec, fa.METRIC_INNER_PRODUCT)
    ivf = fa.downcast_index(fa.extract_index_ivf(index))
    ivf.cp.min_points_per_centroid = 1  # small samples are fine; do not warn
    ivf.cp.niter = cfg.kmeans_iters
    ivf.pq.cp.min_points_per_centroid = 1
    if cfg.opq:
        fa.downcast_VectorTransform(index.chain.at(0)).niter = cfg.opq_iters
    index.train(sample)
    return index


def ivf_of(index: Any) -> Any:
    """The IVF part of an IVF or IVF-PQ index (behind its OPQ rotation, if any)."""
    return faiss().extract_index_ivf(index)


def kind_of(index: Any) -> str:
    """``"flat"``, ``"ivf"`` or ``"ivfpq"``: what a FAISS index read from a file really is."""
    fa = faiss()
    if isinstance(index, fa.IndexIDMap2):
        return "flat"
    try:
        ivf = fa.downcast_index(ivf_of(index))
    except RuntimeError:
        return "other"
    return "ivfpq" if isinstance(ivf, fa.IndexIVFPQ) else "ivf" if isinstance(ivf, fa.IndexIVFFlat) else "other"


def search(index: Any, queries: np.ndarray, k: int, rerank: int = 0, fetch: Fetch | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` [Q, k] of ``queries`` [Q, D]. With ``rerank > k`` and ``fetch``: the ``rerank``
    best by the index, re-scored exactly (inner product) with their vectors from ``fetch``."""
    k = min(k, index.ntotal)
    if rerank <= k or fetch is None:
        return index.search(queries, k)
    _, cand = index.search(queries, min(rerank, index.ntotal))
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for r, (q, row) in enumerate(zip(queries, cand)):
        row = row[row >= 0]
        exact = fetch(row) @ q
        top = np.argsort(-exact, kind="stable")[:k]
        scores[r, :len(top)], ids[r, :len(top)] = exact[top], row[top]
    return scores, ids


def fetch_from(ids: np.ndarray, vecs: np.ndarray) -> Fetch:
    """A :data:`Fetch` over vectors held in an array (or a memory map) with their ids."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    return lambda want: np.asarray(vecs[order[np.searchsorted(sorted_ids, want)]], dtype=np.float32)


def memory_bytes(index: Any) -> dict[str, int]:
    """Bytes an IVF-PQ index holds in RAM, by part: the codes, the ids, the coarse centroids, the PQ
    codebooks and the OPQ rotation (the per-list vector headers, 48 bytes a list, under ``lists``)."""
    fa = faiss()
    ivf = fa.downcast_index(ivf_of(index))
    n, nlist = ivf.ntotal, ivf.nlist
    out = {"codes": n * ivf.code_size, "ids": n * 8, "lists": nlist * 2 * 24,
           "coarse_centroids": nlist * ivf.d * 4, "pq_codebooks": int(ivf.pq.centroids.size()) * 4,
           "rotation": 0}
    if isinstance(index, fa.IndexPreTransform):
        out["rotation"] = index.d * index.d * 4
    return out
