import torch

from xmodal.engine.cache import FeatureCache


def test_each_key_is_encoded_once():
    calls = []

    def fn(batch):
        calls.append(len(batch))
        return batch * 2

    cache = FeatureCache(fn, load=lambda x: torch.tensor([float(x)]), collate=torch.stack, batch_size=2)
    cache.fill([1, 2, 3, 2])
    assert cache.computed == 3 and sum(calls) == 3
    out = cache.get([3, 1, 1])
    assert out.squeeze(1).tolist() == [6.0, 2.0, 2.0]
    assert cache.computed == 3  # looked up, not recomputed
    cache.get([5])
    assert cache.computed == 4 and 5 in cache


def test_disk_cache_computes_once_across_instances_and_recovers_a_torn_file(tmp_path):
    from xmodal.engine.cache import DiskCache

    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6, dtype=torch.float32).view(2, 3)

    first = DiskCache(tmp_path / "c")
    assert torch.equal(first.get("clip.wav|16000", compute), compute().clone()) and first.computed == 1
    calls.clear()
    again = DiskCache(tmp_path / "c")  # another run (or DataLoader worker) reads the stored file
    assert torch.equal(again.get("clip.wav|16000", compute), torch.arange(6.0).view(2, 3))
    assert calls == [] and again.computed == 0
    again.path("clip.wav|16000").write_bytes(b"torn")
    assert torch.equal(again.get("clip.wav|16000", compute), torch.arange(6.0).view(2, 3)) and calls == []  # in memory
    third = DiskCache(tmp_path / "c", memory_bytes=0)  # no memory: every get reads the folder
    assert torch.equal(third.get("clip.wav|16000", compute), torch.arange(6.0).view(2, 3)) and calls == [1]
    assert third.path("other") != third.path("clip.wav|16000")


def test_unreadable_inputs_are_recorded_and_not_retried_when_skipping():
    import pytest

    from xmodal.errors import DataError

    loads = []

    def load(x):
        loads.append(x)
        if x == "bad.png":
            raise DataError(x, "not an image")
        return torch.tensor([float(len(x))])

    cache = FeatureCache(lambda b: b, load=load, collate=torch.stack, batch_size=2)
    with pytest.raises(DataError):
        cache.fill(["a.png", "bad.png"])
    cache.fill(["a.png", "bad.png", "bb.png"], skip_errors=True)
    assert cache.skipped == {"bad.png": ("bad.png", "not an image")} and "a.png" in cache and "bb.png" in cache
    cache.fill(["bad.png"], skip_errors=True)
    assert loads.count("bad.png") == 2  # the failed first fill, then once when skipping
