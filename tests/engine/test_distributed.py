"""Two gloo processes give the gradients of one process (``engine/distributed.py``).

Each test forks two ranks that join a gloo group through a file store, each takes its (uneven) slice of
one global batch, and the gradients after DDP's average (summed, divided by the ranks) are compared in
the ranks with the single-process gradients of the whole batch: the contrastive losses on gathered
features, label positives included, and a mean loss weighed by ``rows_weight``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from xmodal.engine import distributed
from xmodal.engine.losses import LOSSES

SPLIT = (3, 5)  # rows of the 8-row global batch on rank 0 and rank 1: uneven on purpose


def _batch() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 6, generator=gen), torch.randn(8, 5, generator=gen)
    return x, y, ["a", "b", "a", "c", "b", "a", "d", "c"]


def _model() -> nn.ModuleDict:
    torch.manual_seed(1)
    return nn.ModuleDict({"a": nn.Linear(6, 4), "b": nn.Linear(5, 4), "head": nn.Linear(4, 3)})


def _losses(model: nn.ModuleDict, scale: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
            labels: list[str], target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each loss of the rows given, as one rank computes it (gathered pairs, weighed row means)."""
    a = distributed.gather(nn.functional.normalize(model["a"](x), dim=-1))
    b = distributed.gather(nn.functional.normalize(model["b"](y), dim=-1))
    everyone = distributed.gather_objects(labels)
    out = {name: LOSSES.get(name)(a, b, scale, bias, labels=everyone) for name in ("clip", "siglip")}
    mean = nn.functional.cross_entropy(model["head"](model["a"](x)), target)
    out["mean"] = mean * distributed.rows_weight(len(x))
    return out


def _grads(name: str, x, y, labels, target) -> list[torch.Tensor]:
    model = _model()
    scale, bias = nn.Parameter(torch.tensor(2.0)), nn.Parameter(torch.tensor(-1.0))
    _losses(model, scale, bias, x, y, labels, target)[name].backward()
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in [*model.parameters(), scale, bias]]


def _rank(r: int, store: str, results: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=r, world_size=2)
    try:
        x, y, labels = _batch()
        target = torch.arange(8) % 3
        start = sum(SPLIT[:r])
        rows = slice(start, start + SPLIT[r])
        for name in ("clip", "siglip", "mean"):
            grads = _grads(name, x[rows], y[rows], labels[rows], target[rows])
            for g in grads:  # what DDP does: the mean over the ranks
                dist.all_reduce(g)
                g /= 2
            if r == 0:
                torch.save(grads, f"{results}.{name}")
        assert distributed.share(SPLIT[r]) == (start, start + SPLIT[r])
    finally:
        dist.destroy_process_group()


def _fork_ranks(tmp_path: Path) -> None:
    pids = []
    for r in range(2):
        pid = os.fork()
        if pid == 0:  # a rank: never returns into pytest
            code = 1
            try:
                _rank(r, str(tmp_path / "store"), str(tmp_path / "grads"))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids), "a rank failed"


def test_two_ranks_average_to_the_single_process_gradients(tmp_path):
    _fork_ranks(tmp_path)
    x, y, labels = _batch()
    target = torch.arange(8) % 3
    for name in ("clip", "siglip", "mean"):
        alone, ranks = _grads(name, x, y, labels, target), torch.load(tmp_path / f"grads.{name}")
        assert len(alone) == len(ranks)
        for g1, g2 in zip(alone, ranks):
            assert torch.allclose(g1, g2, atol=1e-6), (name, (g1 - g2).abs().max())
        assert any(g.abs().sum() > 0 for g in alone)


def test_one_process_helpers_are_the_identity():
    x = torch.randn(3, 2)
    assert not distributed.active() and distributed.is_main() and distributed.world() == 1
    assert distributed.gather(x) is x and distributed.gather_objects((1, 2)) == [1, 2]
    assert distributed.rows_weight(3) == 1.0 and distributed.share(3) == (0, 3) and distributed.average(2.5) == 2.5
    loader = torch.utils.data.DataLoader(range(5), batch_size=2)
    assert distributed.shard_loader(loader) is loader


def test_rank_batches_slice_each_global_batch_and_refuse_an_indivisible_batch_size():
    batches = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    ranks = [list(distributed.RankBatches(batches, 4, r, 2)) for r in range(2)]
    assert ranks == [[[0, 1], [4, 5], [8]], [[2, 3], [6, 7], [9]]]
    with pytest.raises(Exception, match="does not split over 3 processes"):
        distributed.RankBatches(batches, 4, 0, 3)
