"""The out-of-core feature store: rows in shards on disk, found again by key, crash-safe writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.engine import store as store_mod
from xmodal.engine.store import FeatureStore, StoredRows, digest, file_digest, fill


def _rows(n: int, start: int = 0) -> dict[str, torch.Tensor]:
    feats = torch.arange(start, start + n, dtype=torch.float16)[:, None, None].expand(n, 2, 3).clone()
    return {"features": feats, "ids": torch.arange(start, start + n)}


def test_rows_written_in_shards_are_found_and_read_back_by_a_new_store(tmp_path):
    store = FeatureStore(tmp_path / "s", shard_mb=100 / (1 << 20))  # ~100 bytes: a few rows a shard
    keys = [digest(f"clip{i}") for i in range(23)]
    with store.writer() as w:
        w.add(keys[:10], _rows(10))
        w.add(keys[10:], _rows(13, 10))
    assert len(store.shards) > 3 and len(store) == 23 and store.fields == ["features", "ids"]
    again = FeatureStore(tmp_path / "s")  # another run
    entries = again.find([keys[5], digest("unknown"), keys[22], keys[0]])
    assert entries[1] == -1 and (entries[[0, 2, 3]] >= 0).all()
    got = again.take("ids", entries[[0, 2, 3]])
    assert got.tolist() == [5, 22, 0]
    feats = again.take("features", entries[[0, 2]])
    assert feats.dtype == torch.float16 and feats.shape == (2, 2, 3) and feats[:, 0, 0].tolist() == [5.0, 22.0]
    rows = StoredRows(again, "features", again.find(keys))
    assert rows[torch.tensor([3, 7])].dtype == torch.float32 and rows[torch.tensor([7])][0, 1, 2] == 7.0
    with pytest.raises(KeyError, match="no stored field 'pixels'"):
        again.take("pixels", entries[:1])
    with pytest.raises(ValueError, match="do not match the stored rows"):  # rows of another shape: not in this folder
        again.writer().add([digest("other")], {"features": torch.zeros(1, 4, 3, dtype=torch.float16), "ids": torch.zeros(1)})


def test_fill_encodes_only_missing_keys_and_nothing_on_a_second_run(tmp_path):
    calls: list[list[int]] = []

    def encode(idx):
        calls.append(list(idx))
        return {"features": torch.tensor(idx, dtype=torch.float32)[:, None] * 2}

    keys = [digest(f"file{i % 5}") for i in range(7)]  # two keys repeat: encoded once
    entries, encoded = fill(FeatureStore(tmp_path / "s"), keys, encode, batch_size=2)
    assert encoded == 5 and sum(len(c) for c in calls) == 5 and len(calls) == 3
    calls.clear()
    store = FeatureStore(tmp_path / "s")
    again, encoded = fill(store, keys, encode, batch_size=2)
    assert encoded == 0 and calls == [] and np.array_equal(again, entries)
    assert store.take("features", again)[:, 0].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 0.0, 2.0]


def test_a_killed_write_leaves_no_shard_a_later_run_trusts(tmp_path, monkeypatch):
    folder = tmp_path / "s"
    store = FeatureStore(folder, shard_mb=60 / (1 << 20))  # 60 bytes: 5 rows of 12 bytes a shard
    keys = [digest(f"k{i}") for i in range(12)]
    real = store_mod._write_npy

    def killed_at_second_keys_file(file, array):
        if file.name.endswith(".keys.npy") and len(list(folder.glob("*.keys.npy"))) == 1:
            file.with_name(file.name + ".123.tmp").write_bytes(b"torn")  # a half-written temporary file
            raise KeyboardInterrupt  # the process dies between a shard's fields and its keys
        real(file, array)

    monkeypatch.setattr(store_mod, "_write_npy", killed_at_second_keys_file)
    with pytest.raises(KeyboardInterrupt):
        with store.writer() as w:
            w.add(keys, {"features": torch.ones(12, 3)})
    monkeypatch.undo()
    after = FeatureStore(folder)
    assert len(after) == 5 and (after.find(keys[:5]) >= 0).all() and (after.find(keys[5:]) == -1).all()
    assert after.prune() == 2 and len(FeatureStore(folder)) == 5  # the orphan field file and the temporary
    calls = []
    fill(after, keys, lambda idx: calls.append(idx) or {"features": torch.full((len(idx), 3), 2.0)}, 4)
    assert sum(len(c) for c in calls) == 7 and len(after) == 12


def test_file_digest_follows_content_not_name(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"same bytes")
    (tmp_path / "b.mp4").write_bytes(b"same bytes")
    (tmp_path / "c.mp4").write_bytes(b"other bytes")
    assert file_digest(tmp_path / "a.mp4") == file_digest(tmp_path / "b.mp4") != file_digest(tmp_path / "c.mp4")
    assert digest("ab", "c") != digest("a", "bc")
