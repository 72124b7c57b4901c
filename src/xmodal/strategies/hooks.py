"""Where strategies reach inside a vision tower: its transformer blocks, widths and features.

One small accessor per backbone family, so adapters, visual prompts, partial fine-tuning and side
networks are written once: ``vision_blocks(tower)`` gives the list of transformer blocks of the LiT
ViT or of a transformers CLIP/SigLIP vision encoder. Towers without blocks (the LiT ConvNet) raise a
ConfigError that names what the strategy needs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xmodal.errors import ConfigError


def vision_blocks(tower: nn.Module, need: str = "this strategy") -> list[nn.Module]:
    """The transformer blocks of an image tower, input side first."""
    trunk = getattr(tower, "trunk_net", None)
    if trunk is not None and hasattr(trunk, "blocks") and hasattr(trunk, "cls"):
        return list(trunk.blocks)
    encoder = getattr(tower, "encoder", None)
    layers = getattr(getattr(encoder, "encoder", None), "layers", None)
    if layers is not None:
        return list(layers)
    raise ConfigError(f"{need} needs a transformer vision tower (LiT vision.arch='vit', or a CLIP/SigLIP model); "
                      f"this image tower ({type(getattr(tower, 'trunk_net', tower)).__name__}) has no blocks")


def block_sublayers(block: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(attention, MLP) sub-layers of a transformer block: their outputs are added to the residual
    stream, so a hook on them acts before the residual sum (LiT ``attn``/``mlp``, transformers
    ``self_attn``/``mlp``)."""
    attn = getattr(block, "attn", None)
    attn = attn if attn is not None else getattr(block, "self_attn", None)
    mlp = getattr(block, "mlp", None)
    if attn is None or mlp is None:
        raise ConfigError(f"{type(block).__name__} has no attention / MLP sub-layers (attn or self_attn, and mlp)")
    return attn, mlp


def vision_width(tower: nn.Module) -> int:
    """Width of the pooled trunk features (``tower.trunk``) = token width of the blocks."""
    trunk = getattr(tower, "trunk_net", None)
    if trunk is not None:
        return int(trunk.out_dim)
    return int(tower.hf_config.vision_config.hidden_size)


def final_parts(tower: nn.Module) -> list[nn.Module]:
    """Modules after the last block that shape the pooled features (final norm, SigLIP's MAP head)."""
    trunk = getattr(tower, "trunk_net", None)
    if trunk is not None:
        return [trunk.norm] if hasattr(trunk, "norm") else []
    enc = tower.encoder
    return [m for m in (getattr(enc, "post_layernorm", None), getattr(enc, "head", None)) if m is not None]


def trunk_modules(tower: nn.Module) -> list[nn.Module]:
    """The feature extractor of a tower (everything but the projection into the shared space)."""
    return [getattr(tower, "trunk_net", None) or tower.encoder]


def train_norms(tower: nn.Module) -> None:
    """Let the LayerNorms of a tower's trunk train (with adapters: Houlsby et al., 2019)."""
    for trunk in trunk_modules(tower):
        for module in trunk.modules():
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


def text_token_embedding(tower: nn.Module) -> nn.Embedding:
    """The word-embedding table of a text tower (LiT BERT or a transformers CLIP/SigLIP text model)."""
    encoder = getattr(tower, "encoder", None)
    if encoder is None or not hasattr(encoder, "get_input_embeddings"):
        raise ConfigError("learnable text context needs a transformers text tower with input embeddings")
    return encoder.get_input_embeddings()
