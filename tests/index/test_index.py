"""Index: build, incremental update, search, save/load, shards and merge, audio handling."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from xmodal.errors import CheckpointError, ConfigError
from xmodal.index import BuildConfig, Index

QUIET = BuildConfig(progress=False, chunk=8)


def test_build_search_reload(media, audio_model, tmp_path):
    idx = Index.build([media], model=audio_model, out=tmp_path / "ix", config=QUIET)
    r = idx.last_report
    assert (r.embedded, r.skipped) == (14, [])
    assert idx.stats()["modalities"]["image"]["count"] == 8 and idx.stats()["modalities"]["audio"]["kind"] == "flat"
    hits = idx.search("a red circle", k=5)
    assert len(hits) == 5 and all(h.score >= hits[-1].score for h in hits)
    only = idx.search("a red circle", k=20, modality="video")
    assert {h.modality for h in only} == {"video"} and len(only) == 3
    row = idx.store.row_by_path(str((media / "audio").resolve() / sorted(os.listdir(media / "audio"))[0]))
    assert row.duration and row.duration > 0 and len(row.hash) == 32
    img = sorted((media / "images").iterdir())[0]
    top = idx.search(Path(img), k=1, modality="image")[0]  # query by example: the file itself ranks first
    assert top.path == str(img.resolve()) and top.score == pytest.approx(1.0, abs=1e-4)
    idx.close()
    again = Index.load(tmp_path / "ix", model=audio_model)
    assert len(again) == 14 and again.search("a red circle", k=5)[0].path == hits[0].path


def test_incremental_adds_changes_drops_and_reembeds_nothing_else(media, audio_model, tmp_path):
    out = tmp_path / "ix"
    Index.build([media], model=audio_model, out=out, config=QUIET).close()
    again = Index.build([media], model=audio_model, out=out, config=QUIET)
    assert (again.last_report.embedded, again.last_report.unchanged) == (0, 14)
    again.close()
    images = sorted((media / "images").iterdir())
    images[0].unlink()  # deleted
    os.utime(images[1], ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: same content
    images[2].write_bytes(images[3].read_bytes())  # changed content
    (media / "images" / "new.png").write_bytes(images[4].read_bytes())  # new
    (media / "notes.txt").write_text("not media")  # ignored
    third = Index.build([media], model=audio_model, out=out, config=QUIET)
    r = third.last_report
    assert (r.embedded, r.touched, r.deleted, r.unchanged) == (2, 1, 1, 11)
    assert len(third) == 14 and third.store.row_by_path(str(images[0].resolve())) is None


def test_unreadable_files_are_listed_and_skipped(media, audio_model, tmp_path):
    (media / "images" / "broken.png").write_bytes(b"not a png")
    (media / "videos" / "broken.mp4").write_bytes(b"\x00" * 100)
    idx = Index.build([media], model=audio_model, out=tmp_path / "ix", config=QUIET)
    bad = sorted(Path(p).name for p, _ in idx.last_report.skipped)
    assert bad == ["broken.mp4", "broken.png"] and idx.last_report.embedded == 14


def test_model_without_audio_tower_skips_audio_with_a_reason(media, tiny_lit, tmp_path):
    idx = Index.build([media], model=tiny_lit, out=tmp_path / "ix", config=QUIET)
    reasons = {problem for _, problem in idx.last_report.skipped}
    assert len(idx.last_report.skipped) == 3 and reasons == {"model has no audio tower"}
    assert set(idx.anns) == {"image", "video"}
    with pytest.raises(ConfigError, match="no audio tower"):
        idx.search(Path(next((media / "audio").iterdir())))


def test_manifest_source(tiny_world_src, tiny_lit, tmp_path):
    idx = Index.build([tiny_world_src / "videos.csv"], model=tiny_lit, out=tmp_path / "ix", config=QUIET)
    assert idx.store.count("video") == 24 and idx.store.count("audio") == 0  # audio column: no tower
    assert len(idx.last_report.skipped) == 24


def test_shards_partition_and_merge(media, audio_model, tmp_path):
    parts = []
    for i in range(3):
        cfg = BuildConfig(progress=False, chunk=8, shard=f"{i}/3")
        part = Index.build([media], model=audio_model, out=tmp_path / f"s{i}", config=cfg)
        parts.append(set(part.store.snapshot()))
        part.close()
    assert sum(len(p) for p in parts) == 14 and len(set().union(*parts)) == 14
    full = Index.create(tmp_path / "full", audio_model)
    assert full.merge([tmp_path / f"s{i}" for i in range(3)]) == 14
    full.save()
    solo = Index.build([media], model=audio_model, out=tmp_path / "solo", config=QUIET)
    q = solo.search("a green square", k=14)
    m = Index.load(tmp_path / "full", model=audio_model).search("a green square", k=14)
    assert [h.path for h in q] == [h.path for h in m]


def test_ivf_past_threshold_records_parameters(tmp_path):
    from xmodal.index.ann import AnnConfig, build_ann

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    x = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index, params = build_ann(np.arange(3000, dtype=np.int64) + 7, x, AnnConfig(exact_max=1000))
    assert params["kind"] == "ivf" and params["nlist"] == 256 and params["calibrated_recall_at_10"] >= 0.95
    _, ids = index.search(x[:1], 1)
    assert ids[0, 0] == 7


def test_errors(media, tiny_lit, tmp_path):
    with pytest.raises(CheckpointError):
        Index.load(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="shard"):
        Index.build([media], model=tiny_lit, out=tmp_path / "ix", config=BuildConfig(shard="3/2", progress=False))
    idx = Index.build([media / "images"], model=tiny_lit, out=tmp_path / "ix2", config=QUIET)
    with pytest.raises(ConfigError, match="modality"):
        idx.search("x", modality="smell")


def _clustered(rng, centres, n, spread):
    x = centres[rng.integers(0, len(centres), n)] + spread / np.sqrt(centres.shape[1]) * rng.normal(size=(n, centres.shape[1]))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_nprobe_calibration_excludes_self_and_holds_on_new_queries():
    """The recorded calibration recall is leave-one-out (each indexed query's own id dropped), not
    inflated by the query finding itself, and the chosen nprobe reaches the target on held-out queries."""
    import faiss

    from xmodal.index.ann import AnnConfig, build_ann, recall_at

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(40, 32))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    n = 4000
    x, held_out = _clustered(rng, centres, n, 1.2), _clustered(rng, centres, 500, 1.2)
    ids = np.arange(n, dtype=np.int64) * 3 + 5
    cfg = AnnConfig(exact_max=100, nlist=128, train_size=n, calib_queries=n)  # every vector is a calibration query
    index, params = build_ann(ids, x, cfg)
    nprobe, cal = params["nprobe"], params["calibration"]
    assert cal["queries"] == n and cal["self_excluded"] and cal["aimed_at"] == pytest.approx(0.965)
    assert params["calibrated_recall_at_10"] == cal["recall_by_nprobe"][str(nprobe)] >= 0.965
    assert nprobe > 1 and cal["recall_by_nprobe"]["1"] < 0.95  # the cheapest setting is not enough here

    _, truth = faiss.knn(x, x, 11, metric=faiss.METRIC_INNER_PRODUCT)  # all vectors, by hand
    for probe, recorded in cal["recall_by_nprobe"].items():
        index.nprobe = int(probe)
        _, found = index.search(x, 11)
        loo = recall_at([[f for f in r if f != s][:10] for r, s in zip(found, ids)],
                        [[t for t in r if t != s][:10] for r, s in zip(ids[truth], ids)])
        assert recorded == pytest.approx(loo, abs=1e-4)
        if probe == "1":  # counting self-matches would have recorded a clearly higher recall
            assert recall_at(found[:, :10], ids[truth[:, :10]]) > loo + 0.02

    _, truth = faiss.knn(held_out, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    _, found = index.search(held_out, 10)
    assert recall_at(found, ids[truth]) >= 0.95
    index.nprobe = nprobe // 2
    _, found = index.search(held_out, 10)
    assert recall_at(found, ids[truth]) < 0.965  # nprobe is not larger than it needs to be
