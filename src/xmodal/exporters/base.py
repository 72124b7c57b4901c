"""Exporters: a transferred model in formats that load without xmodal (one file per format).

An exporter declares ``problem(vm)`` (None when it can export this transferred model, else one line
saying why not) and ``export(vm, meta, out)`` (writes the folder ``out``, returns notes for the model
card and a Python snippet that loads it). :func:`xmodal.exporters.export` loads a transfer folder, asks the
format, and writes the export with its model card; a format that cannot hold the model raises one line
naming the formats that can.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from xmodal.backbones.base import XModel
from xmodal.backbones.hf_clip import LAYOUTS, HFImageTower, HFTextTower
from xmodal.registry import Registry
from xmodal.strategies.base import VideoModel


class Exporter(Protocol):
    """A registered export format."""

    description: str  # one line for listings and the model card

    def problem(self, vm: VideoModel) -> str | None: ...  # None: exportable; else why not, in one line

    def export(self, vm: VideoModel, meta: dict[str, Any], out: Any) -> tuple[list[str], str]: ...


EXPORTERS: Registry[Exporter] = Registry("export format")


def hf_towers(model: XModel) -> tuple[HFImageTower, HFTextTower] | None:
    """The image and text towers of a transformers dual encoder base, None for other backbones."""
    image, text = model.tower("image"), model.tower("text")
    return (image, text) if isinstance(image, HFImageTower) and isinstance(text, HFTextTower) else None


def plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state without PEFT's wrapping: LoRA tensors dropped, ``.base_layer`` names unwrapped."""
    return {k.replace(".base_layer.", "."): v for k, v in module.state_dict().items() if "lora_" not in k}


def to_transformers_model(model: XModel) -> nn.Module:
    """A transformers dual encoder holding the current weights of ``model``'s towers (a transformers base)."""
    from transformers import AutoModel

    image, text = hf_towers(model)
    layout = LAYOUTS[image.hf_config.model_type]
    hf = AutoModel.from_config(image.hf_config, dtype=torch.float32)
    parts = {layout.vision: image.encoder, layout.vision_proj: image.head_layer, layout.text: text.encoder,
             layout.text_proj: text.head_layer}
    for name, module in parts.items():
        if name:
            hf.get_submodule(name).load_state_dict(plain_state(module))
    with torch.no_grad():
        hf.logit_scale.fill_(float(model.logit_scale))
        bias = getattr(hf, "logit_bias", None)
        if isinstance(bias, torch.Tensor):
            bias.fill_(float(model.logit_bias))
    return hf.eval()


def save_transformers(model: XModel, out: Any) -> None:
    """``model`` as a transformers folder: config, weights, tokenizer and image processor."""
    image, _ = hf_towers(model)
    to_transformers_model(model).save_pretrained(out)
    model.spec("text").tokenizer.save_pretrained(out)
    if image.processor is not None:
        image.processor.save_pretrained(out)


def changes_base(vm: VideoModel) -> bool:
    """True when the strategy trained weights of the base towers (its own state has ``base.`` entries)."""
    return any(key.startswith("base.") for key in vm.own_state())


def added_modules(vm: VideoModel) -> list[str]:
    """Names of the modules the strategy added that hold parameters."""
    return [name for name, module in vm.added.items() if any(True for _ in module.parameters())]
