"""Loading models by name or path (``xmodal.load``) and counting their parameters.

The other verbs live with what they do (``xmodal.align`` in ``alignment/train.py``, ...) and the registry
listings (``xmodal.list_models``, ``list_strategies``, ...) in :mod:`xmodal.catalog`, which sits above the
packages whose registries it reads; the ``xmodal`` facade exports them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xmodal.backbones import BACKBONES, XModel
from xmodal.backbones.base import CONFIG_FILE
from xmodal.config import from_dict
from xmodal.errors import CheckpointError


def load(name_or_path: str | Path, **config: Any) -> XModel:
    """Load a model by name or path.

    - a folder written by ``XModel.save_pretrained`` (has ``xmodal.json``);
    - ``"lit"``: a new LiT model (locked MiniLM text tower, trainable vision tower); ``config`` keys
      are LiTConfig fields, e.g. ``load("lit", vision={"arch": "vit"})``;
    - anything else: a transformers CLIP-family checkpoint by hub name or local folder
      (``openai/clip-vit-base-patch32``, ``google/siglip-base-patch16-224``, ``./my-clip``).
    """
    path = Path(name_or_path)
    if (path / CONFIG_FILE).is_file():
        return XModel.from_pretrained(path)
    name = str(name_or_path)
    if name in BACKBONES and BACKBONES.get(name).by_name:
        backbone = BACKBONES.get(name)
        return backbone.build(from_dict(backbone.config_cls, config))
    if path.is_dir() and not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: neither an xmodal checkpoint ({CONFIG_FILE}) nor a transformers model (config.json)")
    backbone = BACKBONES.get("hf_clip")
    return backbone.build(from_dict(backbone.config_cls, {"name_or_path": name, **config}))


def count_parameters(model: Any) -> dict[str, int]:
    """``{"trainable": n, "total": n}`` parameter counts (shared tensors counted once)."""
    seen: dict[int, Any] = {}
    for p in model.parameters():
        seen[id(p)] = p
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return {"trainable": trainable, "total": total}
