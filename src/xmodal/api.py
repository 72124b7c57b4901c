"""Loading models by name or path (``xmodal.load``) and counting their parameters.

A saved model folder is recognised by a marker file, one registered :class:`Loader` per folder format
(``LOADERS``): ``xmodal`` (``xmodal.json``: a checkpoint of towers, here) and ``xmodal-transfer``
(``transfer.json``: a transferred video model, registered by ``strategies/embedder.py``, which sits above
this layer). Whatever a loader returns is an :class:`Embedder`, the one contract that index, search,
serve, zero-shot and ``embed`` ask of a model.

The other verbs live with what they do (``xmodal.align`` in ``alignment/train.py``, ...) and the registry
listings (``xmodal.list_models``, ``list_strategies``, ...) in :mod:`xmodal.catalog`, which sits above the
packages whose registries it reads; the ``xmodal`` facade exports them all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

import torch

from xmodal.backbones import BACKBONES, XModel
from xmodal.backbones.base import CONFIG_FILE
from xmodal.config import from_dict
from xmodal.errors import CheckpointError
from xmodal.registry import Registry


@runtime_checkable
class Embedder(Protocol):
    """What embedding code asks of a model (an XModel, a transferred model): its modalities, their
    preprocessing, ``[B, D]`` L2-normalised embeddings of a collated batch in one shared space."""

    modalities: list[str]  # what it embeds (a property on models)
    embed_dim: int  # D of the shared space

    def spec(self, modality: str) -> Any: ...  # preprocessing settings the batches of ``modality`` are collated with

    def encode(self, modality: str, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...  # (their device is the model's)

    def eval(self) -> Any: ...


@dataclass(frozen=True)
class Loader:
    """A registered model-folder format."""

    marker: str  # a file whose presence in a folder marks the format
    load: Callable[[Path], Embedder]  # the folder -> the model
    description: str  # what such a folder is, for error messages


LOADERS: Registry[Loader] = Registry("model folder format")
LOADERS.register("xmodal", Loader(CONFIG_FILE, XModel.from_pretrained, "an xmodal checkpoint"))


def loader_for(path: Path) -> Loader | None:
    """The registered format of the folder ``path`` (by its marker file), None when it is none of them."""
    for name in LOADERS:
        if (path / LOADERS.get(name).marker).is_file():
            return LOADERS.get(name)
    return None


def load(name_or_path: str | Path, **config: Any) -> Embedder:
    """Load a model by name or path.

    - a folder of a registered format (``LOADERS``): written by ``XModel.save_pretrained`` (has
      ``xmodal.json``; an XModel), or by a transfer (``RUN/model``, has ``transfer.json``; its adapted
      video model and text side in the shared space, see ``strategies/embedder.py``);
    - ``"lit"``: a new LiT model (locked MiniLM text tower, trainable vision tower); ``config`` keys
      are LiTConfig fields, e.g. ``load("lit", vision={"arch": "vit"})``;
    - anything else: a transformers CLIP-family checkpoint by hub name or local folder
      (``openai/clip-vit-base-patch32``, ``google/siglip-base-patch16-224``, ``./my-clip``).
    """
    path = Path(name_or_path)
    loader = loader_for(path)
    if loader is not None:
        return loader.load(path)
    name = str(name_or_path)
    if name in BACKBONES and BACKBONES.get(name).by_name:
        backbone = BACKBONES.get(name)
        return backbone.build(from_dict(backbone.config_cls, config))
    if path.is_dir() and not (path / "config.json").is_file():
        known = ", ".join(f"{LOADERS.get(n).description} ({LOADERS.get(n).marker})" for n in LOADERS)
        raise CheckpointError(f"{path}: not a model folder: neither {known} nor a transformers model (config.json)")
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
