"""A transfer folder as a first-class model: ``xmodal.load("RUN/model")`` for index, search, serve, zero-shot.

:class:`TransferredModel` wraps a transferred video model (base + strategy + task head) and gives what
embedding code asks of any model (``api.Embedder``), in the space the task head was trained in
(``Task.space``):

- a video clip goes through the strategy's adapted video model (its injected or unfrozen weights, LoRA
  merged for speed), its temporal head and the task's clip embedding (``retrieve``: the embedding it
  matched captions with; ``classify`` with a class-text head (CoOp): the clip embedding it scored class
  names with; zero-shot heads: the frame-averaged embedding);
- an image is a one-frame clip through the same path;
- a text goes through the strategy's text side when it adapted it (CoOp context), else the base text
  tower, then the head's text map (``retrieve``'s trained residual map).

A task head with no embedding (class logits only, a caption decoder, ...) is refused in one line that
names why and what works. ``LOADERS`` gets the ``xmodal-transfer`` format here, so that ``xmodal.load``
(a layer below) recognises transfer folders by their ``transfer.json``.

``as_towers()`` puts those paths into towers of an XModel of the ``transferred`` backbone (registered here),
so ``xmodal.bind`` binds a new modality into the transferred model's space as into any model's, and the
bound model saves and reloads like any other: its checkpoint holds the base model's assets (``assets/base``),
the transfer's record (strategy, task, configs, the head's meta) and every weight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xmodal.api import LOADERS, Loader
from xmodal.backbones.base import BACKBONES, XModel
from xmodal.config import from_dict, to_dict
from xmodal.errors import ConfigError
from xmodal.strategies.base import VideoModel
from xmodal.strategies.checkpoint import META_FILE, build_transfer, load_transfer, read_transfer_meta
from xmodal.strategies.towers import EmbedderTower
from xmodal.tasks.base import TASKS, SharedSpace

WORKS = ("index, search, serve, zero-shot and bind need clips and texts in one space: transfer with --task retrieve "
         "(or --task classify --strategy prompt, whose head scores class-name texts), or use its base model")


def shared_space(vm: VideoModel, where: str, base: str = "") -> SharedSpace:
    """The task head's :class:`SharedSpace` of ``vm``; a ConfigError (one line: why not, what works) when it has none."""
    space = TASKS.get(vm.task).space(vm)
    if isinstance(space, SharedSpace):
        return space
    raise ConfigError(f"{where}: strategy {vm.strategy!r} for task {vm.task!r} is a classifier, not an embedding "
                      f"model ({space}); {WORKS}{f' {base}' if base else ''}")


class TransferredModel(nn.Module):
    """A transferred video model as an embedding model: ``modalities`` video, image and text, ``spec(m)``,
    ``encode(m, batch) -> [B, D]`` L2-normalised, ``embed_dim`` (see the module docstring)."""

    def __init__(self, vm: VideoModel, where: str = "<transferred model>", base: str = "", source: str = "") -> None:
        super().__init__()
        self.space = shared_space(vm, where, base)
        vm.merge()  # fold LoRA into the base weights: inference at the base model's speed
        self.vm = vm.eval()
        self.where = where
        self.source = source  # the transfer folder it was loaded from ("" when built in memory)
        task = TASKS.get(vm.task)
        self.specs = {"video": task.sampling(vm.task_config, vm.base.spec("video")), "image": vm.base.spec("image"),
                      "text": vm.base.spec("text")}
        self._encoders = {"video": self._clips, "image": self._stills, "text": self._texts}

    @property
    def modalities(self) -> list[str]:
        return list(self._encoders)

    @property
    def embed_dim(self) -> int:
        return self.vm.embed_dim

    @property
    def strategy(self) -> str:
        return self.vm.strategy

    @property
    def task(self) -> str:
        return self.vm.task

    def spec(self, modality: str) -> Any:
        if modality not in self.specs:
            raise ConfigError(f"{self.where}: a transferred video model embeds {self.modalities}, not {modality!r}")
        return self.specs[modality]

    def encode(self, modality: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, D]`` L2-normalised embeddings of a collated batch of ``modality`` in the task head's space."""
        if modality not in self._encoders:
            raise ConfigError(f"{self.where}: a transferred video model embeds {self.modalities}, not {modality!r}")
        return self._encoders[modality](batch)

    def _clips(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.space.video(self.vm.sequence({"pixel_values": batch["pixel_values"]}))

    def _stills(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._clips({"pixel_values": batch["pixel_values"][:, None]})  # an image is a one-frame clip

    def _texts(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised texts through the strategy's text side (CoOp context, which reads strings: the tokens are
        decoded back) or the base text tower, then the head's text map."""
        if self.vm.adapts_text:
            strings = self.specs["text"].tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
            return self.space.text(self.vm.encode_texts(strings))
        return self.space.text(self.vm.base.encode("text", batch))


    def as_towers(self) -> XModel:
        """Its video, image and text paths as towers (``EmbedderTower``, sharing this model) of a ``transferred``
        XModel with the base model's logit scale and bias: what ``xmodal.bind`` adds a tower to."""
        base = self.vm.base
        record = {"strategy": self.vm.strategy, "config": to_dict(self.vm.config), "task": self.vm.task,
                  "task_config": to_dict(self.vm.task_config), "meta": self.vm.meta}
        cfg = TransferredConfig(base_backbone=base.backbone, base_config=to_dict(base.config),
                                transfer=json.loads(json.dumps(record, default=str)), source=self.source)
        towers = {m: EmbedderTower(self, m, base.tower(m).token_embedding()) for m in self.modalities}
        return XModel("transferred", cfg, towers, dict(self.specs), logit_scale=base.logit_scale.item(),
                      logit_bias=base.logit_bias.item())


def load_transferred(path: Path) -> TransferredModel:
    """``xmodal.load`` of a transfer folder: its adapted video model in the task head's shared space."""
    meta = read_transfer_meta(path)
    return TransferredModel(load_transfer(path), str(path), f"({meta.get('base', '')})", source=str(path))


LOADERS.register("xmodal-transfer", Loader(META_FILE, load_transferred, "a transfer folder"))


# ---------------------------------------------------------------- the ``transferred`` backbone
@dataclass
class TransferredConfig:
    base_backbone: str = "lit"  # registered backbone of the transfer's base model
    base_config: dict = field(default_factory=dict)  # its config dataclass, as a dict
    transfer: dict = field(default_factory=dict)  # strategy, config, task, task_config, meta (as in transfer.json)
    source: str = ""  # the transfer folder the towers came from (a record; built from it only without assets)


def _transferred_of(model: XModel) -> TransferredModel:
    """The transferred model whose paths ``model``'s towers are."""
    for tower in model.towers.values():
        if isinstance(tower, EmbedderTower) and isinstance(tower.model, TransferredModel):
            return tower.model
    raise ConfigError(f"a {model.backbone} model without towers of a transferred model")


class TransferredBackbone:
    """Registered as ``transferred``: a transfer's adapted towers (``TransferredModel.as_towers``)."""

    config_cls = TransferredConfig
    by_name = False  # made from a transfer folder (``xmodal bind --model RUN/model``), reloaded from a checkpoint

    def build(self, cfg: TransferredConfig, assets: Path | None = None) -> XModel:
        """From a checkpoint's ``assets``: the base model's architecture, the strategy re-applied and the task
        head re-attached (their weights are the checkpoint's); without assets: the transfer folder ``source``."""
        if assets is None:
            if not cfg.source:
                raise ConfigError("transferred towers are built from a checkpoint's assets or a transfer folder (source)")
            return load_transferred(Path(cfg.source)).as_towers()
        backbone = BACKBONES.get(cfg.base_backbone)
        base = backbone.build(from_dict(backbone.config_cls, cfg.base_config, where="base_config"), assets=assets / "base")
        where = cfg.source or "<transferred towers>"
        model = TransferredModel(build_transfer(base, cfg.transfer).eval(), where, source=cfg.source)
        return model.as_towers()

    def save_assets(self, model: XModel, assets: Path) -> None:
        base = _transferred_of(model).vm.base
        BACKBONES.get(base.backbone).save_assets(base, assets / "base")


BACKBONES.register("transferred", TransferredBackbone())
