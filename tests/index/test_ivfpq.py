"""The compressed index kind (IVF-PQ): build, recall recorded and reached, re-ranking, OPQ, bytes,
save/load, the Index API end to end (recorded settings, repair), and ``xmodal index --kind``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmodal.errors import ConfigError
from xmodal.index import AnnConfig, Index
from xmodal.index import pq
from xmodal.index.ann import build_ann, load_ann, recall_at, save_ann


def _exact(queries, x, ids, k=10):
    import faiss

    _, pos = faiss.knn(queries, x, k, metric=faiss.METRIC_INNER_PRODUCT)
    return ids[pos]


DIM, ROWS = 64, 3000  # the ivfpq_folder fixture's index


def test_ivfpq_build_records_recall_and_reranking_reaches_it(clustered, tmp_path):
    rng = np.random.default_rng(0)
    x, held_out = clustered(rng, 5000), clustered(rng, 300)
    ids = np.arange(5000, dtype=np.int64) * 2 + 3
    cfg = AnnConfig(exact_max=1000, kind="ivfpq", rerank=50)
    index, params = build_ann(ids, x, cfg)
    assert (params["kind"], params["pq_m"], params["pq_nbits"], params["nlist"]) == ("ivfpq", 8, 8, 256)
    assert params["rerank"] == 50 and not params["opq"] and pq.kind_of(index) == "ivfpq"
    recall = params["calibrated_recall_at_10"]
    assert recall == params["calibration"]["recall_by_nprobe"][str(params["nprobe"])] >= 0.965

    truth, fetch = _exact(held_out, x, ids), pq.fetch_from(ids, x)
    _, reranked = pq.search(index, held_out, 10, 50, fetch)
    _, codes = pq.search(index, held_out, 10)
    assert recall_at(reranked, truth) >= 0.95  # the calibrated nprobe holds on queries not in the index
    assert recall_at(codes, truth) < recall_at(reranked, truth) - 0.1  # 8-byte codes alone are far coarser
    scores, top = pq.search(index, held_out[:5], 10, 50, fetch)
    exact = np.einsum("qkd,qd->qk", fetch(top.reshape(-1)).reshape(5, 10, DIM), held_out[:5])
    assert np.allclose(scores, exact, atol=1e-6) and np.all(np.diff(scores, axis=1) <= 0)  # exact, in order

    mem = pq.memory_bytes(index)
    assert mem["codes"] == 5000 * 8 and mem["ids"] == 5000 * 8 and mem["rotation"] == 0
    save_ann(index, tmp_path / "a.faiss")
    again = load_ann(tmp_path / "a.faiss")
    assert pq.kind_of(again) == "ivfpq" and again.ntotal == 5000
    from xmodal.index.ann import set_nprobe

    set_nprobe(again, params["nprobe"])
    assert np.array_equal(pq.search(again, held_out, 10, 50, fetch)[1], reranked)


def test_opq_rotation_and_codes_only_calibration_stops_at_the_plateau(clustered):
    rng = np.random.default_rng(1)
    x = clustered(rng, 3000)
    cfg = AnnConfig(exact_max=0, kind="ivfpq", opq=True, opq_iters=5, rerank=0, nlist=64)
    index, params = build_ann(np.arange(3000, dtype=np.int64), x, cfg)
    assert params["opq"] and pq.kind_of(index) == "ivfpq"
    assert pq.memory_bytes(index)["rotation"] == DIM * DIM * 4
    by = [params["calibration"]["recall_by_nprobe"][k] for k in params["calibration"]["recall_by_nprobe"]]
    assert params["calibrated_recall_at_10"] < 0.965  # codes alone do not reach the target here ...
    assert params["nprobe"] < 64 and by[-1] - by[-2] < cfg.calib_plateau  # ... so it stops where doubling stops paying


def test_pq_shape_defaults_and_errors(clustered):
    assert (pq.auto_m(512), pq.auto_m(768), pq.auto_m(100), pq.auto_m(4)) == (64, 96, 10, 1)
    assert pq.pq_shape(100, 64, AnnConfig(), 256) == {"m": 8, "nbits": 6, "nlist": 100}  # a tiny set: fewer centroids
    with pytest.raises(ConfigError, match="does not divide"):
        pq.pq_shape(5000, 64, AnnConfig(pq_m=7), 256)
    with pytest.raises(ConfigError, match="unknown index kind"):
        build_ann(np.arange(10, dtype=np.int64), clustered(np.random.default_rng(0), 10), AnnConfig(exact_max=0, kind="hnsw"))


def test_index_api_end_to_end_keeps_its_kind(ivfpq_folder, clustered):
    index = Index.load(ivfpq_folder)  # no ann_cfg: the recorded one (ivfpq, rerank=50)
    assert index.ann_cfg.kind == "ivfpq" and index.stats()["modalities"]["image"]["kind"] == "ivfpq"
    _, stored = index.store.vectors("image", DIM)
    queries = clustered(np.random.default_rng(5), 50)
    truth = _exact(queries, stored, np.arange(1, ROWS + 1))
    found = [[h.id for h in index.search(q, k=10)] for q in queries]
    assert recall_at(found, truth) >= 0.95
    hits = index.search(stored[17], k=3, modality="image")  # a stored vector finds its own row first, exactly
    assert hits[0].path == "/made-up/image/17.png" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    index.close()

    repaired = Index.repair(ivfpq_folder)  # rebuilt from the rows with the recorded settings
    assert repaired.params["image"]["kind"] == "ivfpq" and repaired.search(stored[17], k=1)[0].id == hits[0].id
    repaired.close()
    other = Index.load(ivfpq_folder, ann_cfg=AnnConfig(exact_max=1000, kind="ivf"))  # new settings: rebuilt
    assert other.params["image"]["kind"] == "ivf"
    other.close()
    assert json.loads((ivfpq_folder / "ann.json").read_text())["modalities"]["image"]["kind"] == "ivfpq"
    assert Index.load(ivfpq_folder).params["image"]["kind"] == "ivf"  # stale file rebuilt with the recorded ivf


def test_new_rows_are_indexed_with_the_recorded_kind(ivfpq_folder, clustered, put_vectors):
    index = Index.load(ivfpq_folder)
    more = clustered(np.random.default_rng(9), 10)
    put_vectors(index, more, modality="video")  # 10 rows: under exact_max, flat
    assert index.params["video"]["kind"] == "flat" and index.params["image"]["kind"] == "ivfpq"
    assert index.search(more[3], k=1, modality="video")[0].path == "/made-up/video/3.png"


def test_cli_kind_is_recorded_and_kept(media, tiny_model_dir, tmp_path, capsys):
    from xmodal.cli.main import main

    out = tmp_path / "ix"
    base = ["index", str(media / "images"), "--model", str(tiny_model_dir), "--out", str(out), "--no-progress"]
    assert main(base + ["--kind", "ivfpq"]) == 0
    assert Index.load(out).ann_cfg.kind == "ivfpq"
    assert main(base) == 0 and Index.load(out).ann_cfg.kind == "ivfpq"  # a re-run keeps it
    assert main(base + ["--kind", "ivf"]) == 0 and Index.load(out).ann_cfg.kind == "ivf"
    capsys.readouterr()
