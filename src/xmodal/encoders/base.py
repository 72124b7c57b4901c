"""The encoder registry (``ENCODERS``) and the tower that puts an encoder into a shared space.

An encoder turns one modality into token features; binding (``xmodal.binding``) trains one into a
frozen model's space, fusion (``xmodal.fusion``) feeds several to a fusion head. Every encoder is a
registered object with a ``config_cls`` (one dataclass, one comment per field), the ``modality`` it
reads and ``make(cfg, spec, assets) -> (net, spec)``: ``spec`` is a dict of the modality's spec fields
(AudioSpec, SeriesSpec, ImageSpec), completed from the encoder where it fixes them (a transformers
audio model fixes its mel bins). A net honours :class:`Net`. :class:`Tower` adds the linear head into
the shared space, with the ``trunk``/``head``/``head_layer`` split the feature cache relies on, and
is an ``Encoder`` (``backbones/base.py``) like every backbone's tower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn

from xmodal.config import from_dict, to_dict
from xmodal.errors import ConfigError
from xmodal.modalities import MODALITIES
from xmodal.registry import Registry

ENCODERS: Registry[Any] = Registry("encoder")


@runtime_checkable
class Net(Protocol):
    """What an encoder builds: token features and pooled features of one modality, and its insides.

    The LiT vision trunks (``vision.py``: ConvNet, ViT) honour it too, but for ``input_key``."""

    input_key: str  # the collated batch key it reads ("pixel_values", "input_features", ...)
    out_dim: int  # width of its tokens and pooled features

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Tokens ``[B, N, out_dim]`` after each stage / block."""
        ...

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, out_dim]``."""
        ...

    def transformer_blocks(self) -> list[nn.Module]:
        """Its transformer blocks, input side first; ``[]`` for a CNN."""
        ...

    def sublayers(self, block: nn.Module) -> tuple[nn.Module, nn.Module]:
        """(attention, MLP) sub-layers of one of its blocks (a ConfigError when they are not separate)."""
        ...

    def final_parts(self) -> list[nn.Module]:
        """Modules after the last block that shape the pooled features (a final norm)."""
        ...


def make_spec(modality: str, values: dict[str, Any]) -> Any:
    """The spec dataclass of ``modality`` (its ``spec_cls``) from a dict of its fields (unknown keys are errors)."""
    spec_cls = MODALITIES.get(modality).spec_cls
    if spec_cls is None:
        raise ConfigError(f"modality {modality!r} has no preprocessing spec an encoder can read")
    return from_dict(spec_cls, dict(values), where=f"{modality} spec")


def standardize(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Zero mean, unit variance over ``dims`` per sample (robust to recording gain)."""
    return (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True) + 1e-5)


class NetInsides:
    """``Encoder`` members (``backbones/base.py``) of a tower whose ``trunk_module`` is a :class:`Net`:
    its blocks, sub-layers and final parts are the net's; it reads no tokens."""

    trunk_module: nn.Module

    def blocks(self) -> list[nn.Module]:
        return self.trunk_module.transformer_blocks()

    def sublayers(self, block: nn.Module) -> tuple[nn.Module, nn.Module]:
        return self.trunk_module.sublayers(block)

    def final_parts(self) -> list[nn.Module]:
        return self.trunk_module.final_parts()

    def token_embedding(self) -> nn.Embedding | None:
        return None


class Tower(NetInsides, nn.Module):
    """A trunk net and a linear head into the shared space (L2-normalised output); an ``Encoder``
    (``backbones/base.py``) whose insides are its net's."""

    def __init__(self, modality: str, net: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.modality, self.net, self.embed_dim = modality, net, embed_dim
        self.width = net.out_dim
        self.head_layer = nn.Linear(net.out_dim, embed_dim)

    def trunk(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features ``[B, width]``."""
        return self.net(batch[self.net.input_key])

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.head_layer(features), dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.trunk(batch))

    def forward_features(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return self.net.forward_features(batch[self.net.input_key])

    def tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Last-stage tokens ``[B, N, width]`` (what intermediate fusion attends over)."""
        return self.forward_features(batch)[-1]

    @property
    def trunk_module(self) -> nn.Module:
        return self.net


class Builtin:
    """A registered built-in encoder: config class, modality, and a net factory ``(cfg, spec)``."""

    def __init__(self, config_cls: type, modality: str, factory: Callable[[Any, Any], nn.Module]) -> None:
        self.config_cls, self.modality, self.factory = config_cls, modality, factory

    def make(self, cfg: Any, spec: dict[str, Any], assets: Path | None = None) -> tuple[nn.Module, Any]:
        spec_obj = make_spec(self.modality, spec)
        return self.factory(cfg, spec_obj), spec_obj

    def save_assets(self, net: nn.Module, assets: Path) -> None:
        """Built-in nets are rebuilt from their config alone."""


def build_encoder(name: str, config: dict[str, Any] | None = None, spec: dict[str, Any] | None = None,
                  assets: Path | None = None) -> tuple[nn.Module, Any, dict[str, Any]]:
    """``(net, spec, record)`` of encoder ``name``; ``record`` is the JSON that rebuilds it."""
    cfg = encoder_config(name, config)
    net, spec_obj = ENCODERS.get(name).make(cfg, dict(spec or {}), assets)
    return net, spec_obj, {"encoder": name, "config": to_dict(cfg), "spec": to_dict(spec_obj)}


def encoder_config(name: str, config: dict[str, Any] | None = None, modality: str | None = None,
                   spec: dict[str, Any] | None = None) -> Any:
    """Encoder ``name``'s config dataclass from ``config``, without building the encoder: an unknown
    encoder, one that reads another modality than ``modality``, or an unknown config or ``spec`` key is a
    ConfigError."""
    enc = ENCODERS.get(name)
    if modality is not None and enc.modality != modality:
        raise ConfigError(f"encoder {name!r} reads {enc.modality}, not {modality}")
    if spec:
        make_spec(enc.modality, spec)
    return from_dict(enc.config_cls, dict(config or {}), where=f"encoder {name}")
