"""Several processes training one model: ``torchrun --nproc-per-node N -m xmodal align ...``.

torchrun starts N copies of the command and tells each its place in environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). :func:`setup` joins them into one
process group: NCCL with each process on GPU ``LOCAL_RANK`` when CUDA is there, gloo on the CPU.
Without torchrun (no ``WORLD_SIZE``) nothing is initialised and every helper here answers as for one
process (``gather`` returns its input, ``shard_loader`` its loader, ``is_main`` True): the code paths
of a single process do not change.

How N processes end on the weights of one process with the same global batch (to float rounding):

- Batches (:class:`RankBatches`): the loader draws its global batches exactly as one process would
  (the same sampler, the same seeded generator, so also the same order after a resume), and each
  rank keeps a contiguous slice of every global batch. A stock ``DistributedSampler`` would not do:
  it permutes the data its own way and gives rank r every N-th sample of the whole epoch, so the ranks'
  batches together are not the single-process batch.
- Losses over pairs (contrastive): each rank all-gathers the features with :func:`gather`, whose
  backward sums the gathered gradient over the ranks and keeps its own rows' part, and computes the
  loss over the whole global batch (negatives and label positives are global; open_clip's
  ``gather_with_grad``). Each rank then holds ``W x`` the single-process gradient of its own features
  and DDP averages the parameter gradients over the W ranks: the single-process gradient.
- Losses averaged over a rank's own rows (a classification head): :func:`rows_weight` scales them by
  ``W * n_rank / n_global``, so DDP's average of the ranks' gradients is the gradient of the mean over
  the global batch, also when the last batch does not split evenly. (A pair loss scaled the same way
  stays exact: the weights average to one.)
- The logged loss is the ranks' mean (:func:`average`): the single-process figure.

What does not match one process exactly: BatchNorm (and any other batch-statistics layer) normalises
each rank's slice on its own (use a model without it, or convert it to ``SyncBatchNorm`` on GPUs), and
random per-sample draws (augmented views, mixup pairs, modality dropout) are drawn per rank. With
``on_error="skip"``, a rank whose slice of a batch is all unreadable makes every rank skip that batch.
A checkpoint keeps every rank's RNG states; resumed by another number of processes, each rank takes
rank 0's (the global batches do not depend on the number of processes).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from xmodal.errors import ConfigError


def setup() -> bool:
    """Join the process group torchrun described in the environment (once); True when this process is
    one of several ranks. NCCL with this process on GPU ``LOCAL_RANK`` when CUDA is there, else gloo;
    ``XMODAL_BACKEND=gloo`` (or ``nccl``) chooses."""
    import torch.distributed as dist

    if active():
        return True
    if "WORLD_SIZE" not in os.environ or not dist.is_available():
        return False
    backend = os.environ.get("XMODAL_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return True


def teardown() -> None:
    """Leave the process group (when one was joined)."""
    import torch.distributed as dist

    if active():
        dist.destroy_process_group()


def active() -> bool:
    """Whether this process is a rank of an initialised process group."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without torchrun)."""
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def world() -> int:
    """The number of ranks (1 without torchrun)."""
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process is the one that logs, prints and writes files (rank 0)."""
    return rank() == 0


def device() -> torch.device:
    """Where this rank's model (and any tensor of a collective) lives: its GPU under NCCL, else the CPU."""
    import torch.distributed as dist

    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank is here (no-op for one process)."""
    import torch.distributed as dist

    if active():
        dist.barrier()


def sizes(n: int) -> list[int]:
    """Every rank's ``n`` (``[n]`` for one process)."""
    import torch.distributed as dist

    if not active():
        return [n]
    local = torch.tensor([n], device=device())
    out = [torch.zeros_like(local) for _ in range(world())]
    dist.all_gather(out, local)
    return [int(t) for t in out]


def share(n: int) -> tuple[int, int]:
    """``(start, end)`` of this rank's ``n`` rows in a batch gathered over the ranks (``(0, n)`` alone)."""
    counts = sizes(n)
    start = sum(counts[: rank()])
    return start, start + n


class _Gather(torch.autograd.Function):
    """All-gather rows of possibly different counts; backward sums the gradient over the ranks and
    returns this rank's rows of it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        counts = sizes(len(x))
        padded = x.new_zeros((max(counts), *x.shape[1:]))
        padded[: len(x)] = x
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded.contiguous())
        ctx.counts, ctx.rank = counts, rank()
        return torch.cat([p[:c] for p, c in zip(parts, counts)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start: start + ctx.counts[ctx.rank]]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of ``x`` (``[n_r, ...]``) concatenated in rank order, differentiable: the
    gradient of the result reaches each rank's own rows, summed over the ranks. ``x`` alone for one process."""
    return _Gather.apply(x) if active() else x


def gather_objects(items: Sequence[Any]) -> list[Any]:
    """Every rank's ``items`` (picklable) concatenated in rank order (``list(items)`` for one process)."""
    import torch.distributed as dist

    if not active():
        return list(items)
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, list(items))
    return [x for part in out for x in part]


def rows_weight(n: int) -> float:
    """The factor for a loss averaged over this rank's ``n`` rows: ``W * n / (rows over all ranks)``, so
    that DDP's average of the ranks' gradients is the gradient of the mean over the global batch (1 alone)."""
    if not active():
        return 1.0
    counts = sizes(n)
    return len(counts) * n / max(1, sum(counts))


def average(value: float) -> float:
    """The mean of ``value`` over the ranks (``value`` for one process)."""
    import torch.distributed as dist

    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device())
    dist.all_reduce(t)
    return float(t) / world()


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (``flag`` for one process): ranks skip a batch together."""
    import torch.distributed as dist

    if not active():
        return flag
    t = torch.tensor([int(flag)], device=device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t)


def agree(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (a decision such as a time budget must not differ between ranks)."""
    import torch.distributed as dist

    if not active():
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def main_first(fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0 while the others wait, then its result (or the error it raised) on every rank:
    opening a run folder, which may remove another run's files, happens once and before anyone reads it."""
    import torch.distributed as dist

    if not active():
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank
            box[0] = ("error", exc)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


# ---------------------------------------------------------------- batches
class RankBatches:
    """This rank's slice of every global batch of ``batches`` (a batch sampler of index lists, or any
    iterable of index tensors): the global batches are drawn exactly as one process draws them, and
    rank r of W keeps rows ``[r*n//W, (r+1)*n//W)`` of each batch of n rows (all ranks together: the
    whole batch, in order). See the module doc for why this is not a ``DistributedSampler``."""

    def __init__(self, batches: Any, batch_size: int, rank: int, world: int) -> None:
        if batch_size % world:
            raise ConfigError(f"batch size {batch_size} does not split over {world} processes: the batch size is "
                              f"the global batch, give a multiple of {world} (each process gets batch size / {world})")
        self.batches, self.rank, self.world = batches, rank, world

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches:
            n = len(batch)
            if n < self.world:
                raise ConfigError(f"a batch of {n} rows cannot give each of {self.world} processes a row "
                                  f"(the data's last batch?); use fewer processes or another batch size")
            yield batch[self.rank * n // self.world: (self.rank + 1) * n // self.world]


def shard_loader(loader: Any) -> Any:
    """``loader`` as this rank sees it (see :class:`RankBatches`); ``loader`` itself for one process. A
    DataLoader is rebuilt over the same dataset, batch sampler, collate function, workers and generator
    (each epoch's iterator draws its workers' base seed from it before the sampler shuffles: the same
    draws as the original loader); any other iterable of index batches with a ``batch_size`` is wrapped."""
    from torch.utils.data import DataLoader

    if not active():
        return loader
    if not isinstance(loader, DataLoader):
        return RankBatches(loader, loader.batch_size, rank(), world())
    sampler = loader.batch_sampler
    size = sampler.batch_size if loader.batch_size is None else loader.batch_size
    extra = {"prefetch_factor": loader.prefetch_factor, "persistent_workers": loader.persistent_workers} \
        if loader.num_workers else {}
    return DataLoader(loader.dataset, batch_sampler=RankBatches(sampler, size, rank(), world()),
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      worker_init_fn=loader.worker_init_fn, generator=loader.generator, **extra)


# ---------------------------------------------------------------- the model
class _Step(nn.Module):
    """The engine's step as a module's forward, so that DistributedDataParallel sees each forward pass."""

    def __init__(self, model: nn.Module, step: Callable[[Any], Any]) -> None:
        super().__init__()
        self.model, self.step = model, step

    def forward(self, batch: Any) -> Any:
        return self.step(batch)


class Replica:
    """``model`` and the engine's ``step`` as one rank runs them: under torchrun the step runs through
    ``DistributedDataParallel`` (gradients averaged over the ranks at each backward, except inside
    :meth:`accumulating`); alone, the step itself."""

    def __init__(self, model: nn.Module, step: Callable[[Any], Any]) -> None:
        self.ddp: nn.Module | None = None
        self.step = step
        if active():
            from torch.nn.parallel import DistributedDataParallel

            ids = [device().index] if device().type == "cuda" else None
            # find_unused_parameters: a step need not touch every trainable parameter (a task's head of
            # another task, a bias its loss ignores); buffers are made equal once, then stay per rank
            # (broadcasting rank 0's at each step would change what a single process computes)
            self.ddp = DistributedDataParallel(_Step(model, step), device_ids=ids, forward_sync_buffers=False,
                                               find_unused_parameters=True)
            self.step = self.ddp

    def accumulating(self, yes: bool) -> Any:
        """Context of a forward + backward whose gradients are summed locally, not yet synchronised."""
        return self.ddp.no_sync() if yes and self.ddp is not None else nullcontext()

