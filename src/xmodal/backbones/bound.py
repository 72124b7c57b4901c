"""The ``bound`` backbone: a base checkpoint's towers plus towers bound to it later.

A bound model records the base backbone's name and config and, per added modality, the encoder
record ``{"encoder", "config", "spec"}`` from :func:`xmodal.encoders.base.build_encoder`. Its
checkpoint is an ordinary xmodal checkpoint (one ``model.safetensors``), with the base backbone's
assets under ``assets/base`` and each added tower's under ``assets/towers/<modality>``, so
``xmodal.load(path)`` rebuilds it offline. A bind may also train a projection after an anchor tower
(a text head, as in LiT's and CLAP's text projections); the config lists those (``projections``) and
the weights hold them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xmodal.backbones.base import BACKBONES, XModel
from xmodal.encoders.base import ENCODERS, Tower, build_encoder
from xmodal.config import from_dict, to_dict
from xmodal.errors import ConfigError


@dataclass
class BoundConfig:
    base_backbone: str = "lit"  # registered backbone of the base model
    base_config: dict = field(default_factory=dict)  # its config dataclass, as a dict
    towers: dict = field(default_factory=dict)  # modality -> {"encoder", "config", "spec"} of bound towers
    projections: list = field(default_factory=list)  # modalities of the base with a trained projection after their tower


class ResidualProjection(nn.Module):
    """``x + W x`` with ``W`` starting at zero: the identity until trained, and weight decay pulls it back there."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(x)


def _base_of(model: XModel) -> tuple[str, Any, dict[str, Any]]:
    """``(base backbone, base config, bound tower records)`` of any XModel."""
    if isinstance(model.config, BoundConfig):
        cfg = model.config
        base_cfg = from_dict(BACKBONES.get(cfg.base_backbone).config_cls, cfg.base_config)
        return cfg.base_backbone, base_cfg, dict(cfg.towers)
    return model.backbone, model.config, {}


def add_tower(model: XModel, modality: str, tower: nn.Module, spec: Any, record: dict[str, Any],
              project: str | None = None) -> XModel:
    """A ``bound`` XModel holding ``model``'s towers and projections (shared, not copied) plus ``tower``,
    with its own copy of the logit scale and bias; with ``project``, a new :class:`ResidualProjection`
    after that tower (a ConfigError when it has one already)."""
    if modality in model.towers:
        raise ConfigError(f"the model already has a {modality!r} tower")
    base, base_cfg, records = _base_of(model)
    projections = dict(model.projections)
    if project is not None:
        if project in projections:
            raise ConfigError(f"the {project!r} tower already has a projection (trained by an earlier bind)")
        projections[project] = ResidualProjection(model.embed_dim).to(model.logit_scale.device)
    cfg = BoundConfig(base_backbone=base, base_config=to_dict(base_cfg), towers={**records, modality: record},
                      projections=sorted(projections))
    out = XModel("bound", cfg, {**dict(model.towers), modality: tower}, {**model.specs, modality: spec},
                 logit_scale=model.logit_scale.item(), logit_bias=model.logit_bias.item())
    out.projections.update(projections)
    return out


def base_view(model: XModel) -> XModel:
    """The base model's towers as an XModel of the base backbone (shares the modules)."""
    base, base_cfg, records = _base_of(model)
    towers = {m: t for m, t in model.towers.items() if m not in records}
    specs = {m: s for m, s in model.specs.items() if m not in records}
    return XModel(base, base_cfg, towers, specs)


class BoundBackbone:
    """Registered as ``bound``."""

    config_cls = BoundConfig
    by_name = True  # load("bound") builds its base (LiT by default) with no towers bound yet

    def build(self, cfg: BoundConfig, assets: Path | None = None) -> XModel:
        backbone = BACKBONES.get(cfg.base_backbone)
        base_cfg = from_dict(backbone.config_cls, cfg.base_config, where="base_config")
        model = backbone.build(base_cfg, assets=assets / "base" if assets is not None else None)
        towers, specs = dict(model.towers), dict(model.specs)
        for modality, record in cfg.towers.items():
            where = assets / "towers" / modality if assets is not None else None
            net, spec, _ = build_encoder(record["encoder"], record.get("config"), record.get("spec"), assets=where)
            towers[modality] = Tower(modality, net, model.embed_dim)
            specs[modality] = spec
        out = XModel("bound", cfg, towers, specs)
        for modality in cfg.projections:
            out.projections[modality] = ResidualProjection(model.embed_dim)
        return out

    def save_assets(self, model: XModel, assets: Path) -> None:
        view = base_view(model)
        BACKBONES.get(view.backbone).save_assets(view, assets / "base")
        for modality, record in model.config.towers.items():
            ENCODERS.get(record["encoder"]).save_assets(model.towers[modality].net, assets / "towers" / modality)


BACKBONES.register("bound", BoundBackbone())
