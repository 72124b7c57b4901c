"""The ``bound`` backbone: a base checkpoint's towers plus towers bound to it later.

A bound model records the base backbone's name and config and, per added modality, the encoder
record ``{"encoder", "config", "spec"}`` from :func:`xmodal.encoders.base.build_encoder`. Its
checkpoint is an ordinary xmodal checkpoint (one ``model.safetensors``), with the base backbone's
assets under ``assets/base`` and each added tower's under ``assets/towers/<modality>``, so
``xmodal.load(path)`` rebuilds it offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _base_of(model: XModel) -> tuple[str, Any, dict[str, Any]]:
    """``(base backbone, base config, bound tower records)`` of any XModel."""
    if isinstance(model.config, BoundConfig):
        cfg = model.config
        base_cfg = from_dict(BACKBONES.get(cfg.base_backbone).config_cls, cfg.base_config)
        return cfg.base_backbone, base_cfg, dict(cfg.towers)
    return model.backbone, model.config, {}


def add_tower(model: XModel, modality: str, tower: nn.Module, spec: Any, record: dict[str, Any]) -> XModel:
    """A ``bound`` XModel holding ``model``'s towers (shared, not copied) plus ``tower``."""
    if modality in model.towers:
        raise ConfigError(f"the model already has a {modality!r} tower")
    base, base_cfg, records = _base_of(model)
    cfg = BoundConfig(base_backbone=base, base_config=to_dict(base_cfg), towers={**records, modality: record})
    out = XModel("bound", cfg, {**dict(model.towers), modality: tower}, {**model.specs, modality: spec})
    out.logit_scale, out.logit_bias = model.logit_scale, model.logit_bias
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
        return XModel("bound", cfg, towers, specs)

    def save_assets(self, model: XModel, assets: Path) -> None:
        view = base_view(model)
        BACKBONES.get(view.backbone).save_assets(view, assets / "base")
        for modality, record in model.config.towers.items():
            ENCODERS.get(record["encoder"]).save_assets(model.towers[modality].net, assets / "towers" / modality)


BACKBONES.register("bound", BoundBackbone())
