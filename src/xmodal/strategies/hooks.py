"""Where strategies reach inside a tower: its transformer blocks, and hooks on their inputs and outputs.

Every tower declares its insides (the ``Encoder`` protocol of ``backbones/base.py``: ``blocks()``,
``sublayers(block)``, ``final_parts()``, ``trunk_module``, ``width``, ``token_embedding()``), so adapters,
visual prompts, partial fine-tuning and side networks are written once for the LiT ViT and for
transformers CLIP/SigLIP encoders. A tower without blocks (the LiT ConvNet) gives a ConfigError that
names what the strategy needs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xmodal.errors import ConfigError


def vision_blocks(tower: nn.Module, need: str = "this strategy") -> list[nn.Module]:
    """The transformer blocks of an image tower, input side first (a ConfigError when it has none)."""
    blocks = tower.blocks()
    if not blocks:
        raise ConfigError(f"{need} needs a transformer vision tower (LiT vision.arch='vit', or a CLIP/SigLIP model); "
                          f"this image tower ({type(tower.trunk_module).__name__}) has no blocks")
    return blocks


def train_norms(tower: nn.Module) -> None:
    """Let the LayerNorms of a tower's trunk train (with adapters: Houlsby et al., 2019)."""
    for module in tower.trunk_module.modules():
        if isinstance(module, nn.LayerNorm):
            module.requires_grad_(True)


def first_tensor(output: Any) -> torch.Tensor:
    """Hidden states from a block's output (a tensor, or a tuple whose first item is one)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def replace_first(output: Any, value: torch.Tensor) -> Any:
    """``output`` with its hidden states replaced by ``value`` (same container type)."""
    if isinstance(output, tuple):
        return (value, *output[1:])
    if isinstance(output, list):
        return [value, *output[1:]]
    return value


def block_input(args: tuple, kwargs: dict) -> tuple[torch.Tensor, bool]:
    """Hidden states a block was called with, and whether they came as a keyword argument."""
    if args:
        return args[0], False
    return kwargs["hidden_states"], True


def with_block_input(args: tuple, kwargs: dict, value: torch.Tensor, as_kwarg: bool) -> tuple[tuple, dict]:
    if as_kwarg:
        return args, {**kwargs, "hidden_states": value}
    return (value, *args[1:]), kwargs
