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
