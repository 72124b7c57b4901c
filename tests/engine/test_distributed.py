"""Two gloo processes give the gradients of one process (``engine/distributed.py``).

Each test forks two ranks that join a gloo group through a file store, each takes its (uneven) slice of
one global batch, and the gradients after DDP's average (summed, divided by the ranks) are compared in
the ranks with the single-process gradients of the whole batch: the contrastive losses on gathered
features, label positives included, and a mean loss weighed by ``rows_weight``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

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


def _rank(r: int, results: str) -> None:
    """Rank r's gradients of each loss on its slice, averaged over the ranks as DDP does (rank 0 saves them)."""
    import torch.distributed as dist

    x, y, labels = _batch()
    target = torch.arange(8) % 3
    start = sum(SPLIT[:r])
    rows = slice(start, start + SPLIT[r])
    for name in ("clip", "siglip", "mean"):
        grads = _grads(name, x[rows], y[rows], labels[rows], target[rows])
        for g in grads:
            dist.all_reduce(g)
            g /= 2
        if r == 0:
            torch.save(grads, f"{results}.{name}")
    assert distributed.share(SPLIT[r]) == (start, start + SPLIT[r])


def _fork_ranks(tmp_path: Path, target: Callable[[int, str], None]) -> None:
    """``target(rank, results prefix)`` in two forked ranks of a gloo group; fails when a rank fails."""
    import torch.distributed as dist

    pids = []
    for r in range(2):
        pid = os.fork()
        if pid == 0:  # a rank: never returns into pytest
            code = 1
            try:
                torch.set_num_threads(1)
                dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=r, world_size=2)
                target(r, str(tmp_path / "out"))
                dist.destroy_process_group()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids), "a rank failed"


def test_two_ranks_average_to_the_single_process_gradients(tmp_path):
    _fork_ranks(tmp_path, _rank)
    x, y, labels = _batch()
    target = torch.arange(8) % 3
    for name in ("clip", "siglip", "mean"):
        alone, ranks = _grads(name, x, y, labels, target), torch.load(tmp_path / f"out.{name}")
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


def _mix_rank(r: int, results: str) -> None:
    """Mix rank r's slice of a 5-row batch (rank 0 mixes, rank 1 does not) on the audio side, once as the
    loss's rows and once as its columns; save the gathered positives and what this rank's part should be."""
    from xmodal.alignment.batches import mix
    from xmodal.modalities.augment import AUGMENTERS
    from xmodal.modalities.audio_augment import AudioAugmentConfig

    pos = torch.tensor([[1.0 if i % 2 == j % 2 else 0.0 for j in range(5)] for i in range(5)]) + torch.eye(5)
    start, end = (0, 2) if r == 0 else (2, 5)
    cfg = AudioAugmentConfig(mixup=1.0 if r == 0 else 0.0)
    batch = {"audio": {"input_features": torch.randn(end - start, 16, 8) - 3}, "index": torch.arange(start, end)}
    out = {}
    for first in ("audio", "image"):
        torch.manual_seed(r)
        _, got = mix(batch, {"audio": cfg}, ["audio"], first, pos)
        torch.manual_seed(r)
        drawn = AUGMENTERS.get("audio").mix(batch["audio"], cfg)
        rows = (pos if first == "audio" else pos.t())[start:end]
        own = rows if drawn is None else drawn[2] * rows + (1 - drawn[2]) * rows[drawn[1]]
        out[first] = (got, own if first == "audio" else own.t())
    torch.save(out, f"{results}.{r}")


def test_mixed_positives_are_mixed_on_each_ranks_rows_and_gathered(tmp_path):
    _fork_ranks(tmp_path, _mix_rank)
    ranks = [torch.load(tmp_path / f"out.{r}") for r in range(2)]
    for first, cut in (("audio", lambda m, a, b: m[a:b]), ("image", lambda m, a, b: m[:, a:b])):
        (got0, own0), (got1, own1) = ranks[0][first], ranks[1][first]
        assert torch.equal(got0, got1)  # every rank holds the same global positives
        assert torch.allclose(cut(got0, 0, 2), own0) and torch.allclose(cut(got0, 2, 5), own1)
        assert not torch.equal(own0, cut(torch.tensor([[1.0 if i % 2 == j % 2 else 0.0 for j in range(5)]
                                                        for i in range(5)]) + torch.eye(5), 0, 2))  # rank 0 mixed
