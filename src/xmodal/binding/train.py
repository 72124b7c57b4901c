"""``xmodal.bind``: train a tower for a new modality against a frozen anchor tower.

The given model is an XModel or anything that puts its encoding paths into one
(``backbones.base.TowerSource``: a transferred video model, ``strategies/embedder.py``). Every parameter
of the given model stays as it is; the new tower trains, with the anchor's embeddings
computed once by the alignment cache (``alignment/train.py``), together with what a bind may add on
the anchor side: a projection after an anchor whose items are strings (a text head, as in LiT's
ablations and CLAP: the text trunk stays locked) and the bound model's own temperature. Positives are
label-aware (rows sharing a label or a repeated caption), batches are class-balanced when rows have
classes, and the new modality is read as random augmented views (audio: crops, SpecAugment, gain,
noise, mixup) decoded once. The result is a ``bound`` model (``backbones/bound.py``) that saves and
reloads like any xmodal checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from xmodal.alignment.train import AlignConfig, AlignResult, align
from xmodal.backbones.base import TowerSource
from xmodal.backbones.bound import add_tower
from xmodal.config import from_dict
from xmodal.encoders.base import Tower, build_encoder, encoder_config
from xmodal.engine.fit import FitConfig
from xmodal.engine.losses import LOSSES
from xmodal.errors import ConfigError
from xmodal.modalities import AUGMENTERS, MODALITIES
from xmodal.tasks.prompts import PROMPTS

ANCHOR_HEADS = ("auto", "train", "frozen")  # values of BindConfig.anchor_head


def _default_align() -> AlignConfig:
    return AlignConfig(label_column="", batch_size=128,
                       fit=FitConfig(epochs=10, lr=2e-3, monitor="val_R@1"))


@dataclass
class BindConfig:
    modality: str = "audio"  # the new modality ("audio", "series", ...)
    encoder: str = "audio_cnn"  # registered encoder: audio_cnn, audio_transformer, hf_audio, series_cnn
    encoder_config: dict = field(default_factory=dict)  # fields of the encoder's config dataclass
    spec: dict = field(default_factory=dict)  # preprocessing fields (AudioSpec / SeriesSpec) of the new modality
    anchor: str = "image"  # frozen tower to bind to ("image", "video": frame-averaged image tower, "text")
    columns: tuple[str, str] = ("audio", "image")  # manifest columns of the new modality and the anchor
    anchor_head: str = "auto"  # a trained projection after the anchor tower: "auto" (when its items are strings: text), "train", "frozen"
    learn_temperature: bool = True  # train the bound model's own logit scale (the given model's stays as it is)
    augment: bool = True  # random train-time views of the new modality when it has an augmenter (AUGMENTERS)
    augment_config: dict = field(default_factory=dict)  # fields of that augmenter's config (audio: AudioAugmentConfig)
    caption_prompts: bool = True  # an anchor of strings trains on captions written into the new modality's prompt set
    balance: bool = True  # class-balanced batches when rows have classes (align.label_column, else repeated anchor items)
    precise_bn: bool = True  # at the end, recompute the new tower's BatchNorm statistics over the training rows
    align: AlignConfig = field(default_factory=_default_align)  # loss, batch size, label column, engine; the fields above set its
    # modalities, columns, augment, caption_prompts, balance and precise_bn


def check_config(cfg: BindConfig) -> None:
    """The names and keys of ``cfg`` (encoder, its config and spec, modalities, loss, augmenter), checked
    without a model or data: a ConfigError names the bad one and the known ones."""
    MODALITIES.get(cfg.modality)
    MODALITIES.get(cfg.anchor)
    encoder_config(cfg.encoder, cfg.encoder_config, cfg.modality, cfg.spec)
    LOSSES.get(cfg.align.loss)
    if len(cfg.columns) != 2:
        raise ConfigError("bind: columns must name the new modality's column and the anchor's")
    if cfg.anchor_head not in ANCHOR_HEADS:
        raise ConfigError(f"bind: anchor_head {cfg.anchor_head!r} is not one of {', '.join(ANCHOR_HEADS)}")
    if cfg.augment_config and cfg.modality not in AUGMENTERS:
        raise ConfigError(f"bind: augment_config given, but {cfg.modality!r} has no augmenter "
                          f"(augmenters: {', '.join(AUGMENTERS.names())})")
    if cfg.modality in AUGMENTERS:
        from_dict(AUGMENTERS.get(cfg.modality).config_cls, dict(cfg.augment_config), where="bind augment_config")


def anchor_projection(cfg: BindConfig, model: Any) -> str | None:
    """The anchor, when the bind trains a projection after it (see ``BindConfig.anchor_head``)."""
    strings = not MODALITIES.get(cfg.anchor).is_file
    wanted = cfg.anchor_head == "train" or (cfg.anchor_head == "auto" and strings and cfg.anchor not in model.projections)
    return cfg.anchor if wanted else None


def align_config(cfg: BindConfig) -> AlignConfig:
    """The alignment the bind runs: ``cfg.align`` with the two modalities and columns, the new modality's
    augmentation, balancing and BatchNorm recalibration and, for an anchor of strings, its captions
    written into the new modality's prompts."""
    augment = {cfg.modality: dict(cfg.augment_config)} if cfg.augment and cfg.modality in AUGMENTERS else {}
    prompts = cfg.modality if (cfg.caption_prompts and not MODALITIES.get(cfg.anchor).is_file
                               and cfg.modality in PROMPTS) else ""
    return dataclasses.replace(cfg.align, modalities=(cfg.modality, cfg.anchor), columns=tuple(cfg.columns),
                               init_logit_scale=None, init_logit_bias=None, augment=augment, caption_prompts=prompts,
                               balance=cfg.balance, precise_bn=cfg.precise_bn)


def bind(
    model: Any,
    rows: Sequence[dict[str, Any]],
    cfg: BindConfig | None = None,
    val_rows: Sequence[dict[str, Any]] | None = None,
    root: str | Path | None = None,
    out: str | Path | None = None,
) -> AlignResult:
    """Bind ``cfg.modality`` to the frozen ``cfg.anchor`` tower of ``model`` on paired manifest rows.

    ``model`` is an XModel or a transferred model (``xmodal.load("RUN/model")``): then the anchor is one of
    its adapted towers (a clip through the adapted video tower, its temporal head and the task head's
    embedding; a text through the strategy's text side and the head's text map), frozen like any anchor.

    Returns an AlignResult whose ``model`` is the bound XModel (the input model's towers plus the new
    one, and the anchor's projection when one trained). With ``val_rows`` each epoch logs zero-shot
    top-1 (text anchor, rows with labels) or retrieval R@1 of new modality -> anchor; with ``out``,
    training resumes from ``out`` and the model is saved to ``out/model``."""
    cfg = cfg or BindConfig()
    check_config(cfg)
    if not isinstance(model, TowerSource):
        raise ConfigError(f"bind adds a tower to a model of towers (an XModel or a transferred model), not to a "
                          f"{type(model).__name__}")
    model = model.as_towers()  # a transferred model: its adapted towers, in the space of its task head
    model.tower(cfg.anchor)  # a ConfigError naming the towers there are
    torch.manual_seed(cfg.align.seed)
    net, spec, record = build_encoder(cfg.encoder, cfg.encoder_config, cfg.spec)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    device = next(model.parameters()).device
    tower = Tower(cfg.modality, net, model.embed_dim).to(device)
    bound = add_tower(model, cfg.modality, tower, spec, record, project=anchor_projection(cfg, model))
    bound.logit_scale.requires_grad_(cfg.learn_temperature)
    return align(bound, rows, align_config(cfg), val_rows=val_rows, root=root, out=out)
