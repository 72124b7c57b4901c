"""``xmodal.bind``: train a tower for a new modality against a frozen anchor tower.

Every parameter of the given model is frozen (towers, temperature); only the new tower trains, with
the anchor's embeddings computed once by the alignment cache (``align/train.py``). The result is a
``bound`` model (``bind/backbone.py``) that saves and reloads like any xmodal checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from xmodal.engine.losses import LOSSES
from xmodal.alignment.train import AlignConfig, AlignResult, align
from xmodal.backbones.bound import add_tower
from xmodal.encoders.base import Tower, build_encoder, encoder_config
from xmodal.engine.fit import FitConfig
from xmodal.errors import ConfigError
from xmodal.modalities import MODALITIES


def _default_align() -> AlignConfig:
    return AlignConfig(label_column="", batch_size=128, fit=FitConfig(epochs=10, lr=2e-3, monitor="val_R@1"))


@dataclass
class BindConfig:
    modality: str = "audio"  # the new modality ("audio", "series", ...)
    encoder: str = "audio_cnn"  # registered encoder: audio_cnn, audio_transformer, hf_audio, series_cnn
    encoder_config: dict = field(default_factory=dict)  # fields of the encoder's config dataclass
    spec: dict = field(default_factory=dict)  # preprocessing fields (AudioSpec / SeriesSpec) of the new modality
    anchor: str = "image"  # frozen tower to bind to ("image", "video": frame-averaged image tower, "text")
    columns: tuple[str, str] = ("audio", "image")  # manifest columns of the new modality and the anchor
    align: AlignConfig = field(default_factory=_default_align)  # loss, batch size, engine; its modalities/columns are set from above


def check_config(cfg: BindConfig) -> None:
    """The names and keys of ``cfg`` (encoder, its config and spec, modalities, loss), checked without a
    model or data: a ConfigError names the bad one and the known ones."""
    MODALITIES.get(cfg.modality)
    MODALITIES.get(cfg.anchor)
    encoder_config(cfg.encoder, cfg.encoder_config, cfg.modality, cfg.spec)
    LOSSES.get(cfg.align.loss)
    if len(cfg.columns) != 2:
        raise ConfigError("bind: columns must name the new modality's column and the anchor's")


def bind(
    model: Any,
    rows: Sequence[dict[str, Any]],
    cfg: BindConfig | None = None,
    val_rows: Sequence[dict[str, Any]] | None = None,
    root: str | Path | None = None,
    out: str | Path | None = None,
) -> AlignResult:
    """Bind ``cfg.modality`` to the frozen ``cfg.anchor`` tower of ``model`` on paired manifest rows.

    Returns an AlignResult whose ``model`` is the bound XModel (the input model's towers plus the new
    one). With ``val_rows`` each epoch logs retrieval R@1 of new modality -> anchor; with ``out``,
    training resumes from ``out`` and the model is saved to ``out/model``."""
    cfg = cfg or BindConfig()
    check_config(cfg)
    model.tower(cfg.anchor)  # a ConfigError naming the towers there are
    torch.manual_seed(cfg.align.seed)
    net, spec, record = build_encoder(cfg.encoder, cfg.encoder_config, cfg.spec)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    device = next(model.parameters()).device
    bound = add_tower(model, cfg.modality, Tower(cfg.modality, net, model.embed_dim).to(device), spec, record)
    acfg = dataclasses.replace(cfg.align, modalities=(cfg.modality, cfg.anchor), columns=tuple(cfg.columns),
                               init_logit_scale=None, init_logit_bias=None)
    return align(bound, rows, acfg, val_rows=val_rows, root=root, out=out)
