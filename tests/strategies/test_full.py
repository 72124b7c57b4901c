"""``full`` fine-tuning with activation checkpointing: the same gradients, the blocks run again in backward."""

from __future__ import annotations

import pytest
import torch

import xmodal
from xmodal.strategies.train import TransferConfig, build, training_step
from xmodal.strategies.data import ClipSet

META = {"classes": ["a", "b"]}


def _gradients(model, checkpointed: bool, clips: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
    """Gradients of one classification loss, and how often the first block's MLP ran."""
    vm = build(model, TransferConfig(strategy="full", options={"checkpoint_activations": checkpointed}), META)
    vm.train()
    mlp = vm.vision.sublayers(vm.vision.blocks()[0])[1]
    runs = []
    mlp.register_forward_pre_hook(lambda *_: runs.append(1))  # a pre-hook: recomputation stops early
    data = ClipSet(clips, torch.arange(len(clips)), {"labels": torch.tensor([0, 1, 1])}, [], [])
    training_step(vm, data, {"pixel_values": clips})(torch.arange(len(clips)))["loss"].backward()
    return {n: p.grad.clone() for n, p in vm.named_parameters() if p.grad is not None}, len(runs)


@pytest.mark.parametrize("tower", ["lit_vit", "hf_clip"])
def test_checkpointed_blocks_give_the_same_gradients(tower, make_lit, tiny_clip_dir):
    size = 16 if tower == "lit_vit" else 30
    clips = torch.randn(3, 2, 3, size, size, generator=torch.Generator().manual_seed(0))
    make = (lambda: make_lit("vit")) if tower == "lit_vit" else (lambda: xmodal.load(str(tiny_clip_dir)))
    plain, plain_runs = _gradients(make(), False, clips)
    ckpt, ckpt_runs = _gradients(make(), True, clips)
    assert plain.keys() == ckpt.keys() and any(n.startswith("base.") for n in plain)
    for name in plain:
        assert torch.allclose(plain[name], ckpt[name], atol=1e-5), name
    assert (plain_runs, ckpt_runs) == (1, 2)  # recomputed once in the backward pass
