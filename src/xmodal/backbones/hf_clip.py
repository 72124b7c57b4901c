"""CLIP-family dual encoders from transformers, by hub name or folder.

Supported ``model_type``s (see ``LAYOUTS``): ``clip``, ``siglip``, ``metaclip_2``, ``chinese_clip``,
``altclip``; anything else is a ConfigError naming the folder and its type.

``build(HFClipConfig(name_or_path="openai/clip-vit-base-patch32"))`` loads the model with
``AutoModel.from_pretrained`` and splits it into two towers that *share* its modules (nothing is
copied): the image tower holds ``vision_model`` (+ ``visual_projection``), the text tower holds
``text_model`` (+ ``text_projection``). Each tower calls its modules exactly as transformers'
``get_image_features`` / ``get_text_features`` do, so embeddings are those of transformers, L2-normalised.

Preprocessing comes from the model folder: the image processor (``preprocessor_config.json``) gives the
ImageSpec, the tokenizer the TextSpec (SigLIP pads to ``max_length``: it was trained that way). A
checkpoint's ``assets/`` holds the transformers config, tokenizer and image processor (no weights) so
:meth:`HFClipBackbone.build` can rebuild the architecture offline before the weights are loaded.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xmodal.backbones.base import BACKBONES, XModel
from xmodal.errors import CheckpointError, ConfigError
from xmodal.modalities.base import ImageSpec, TextSpec, VideoSpec

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEXT_INPUTS = ("input_ids", "attention_mask", "position_ids")  # what CLIP-style text encoders take
BERT_INPUTS = TEXT_INPUTS + ("token_type_ids",)  # BERT/XLM-R text encoders also take segment ids


@dataclass
class HFClipConfig:
    name_or_path: str = ""  # hub name ("openai/clip-vit-base-patch32") or a local transformers folder
    model_type: str = ""  # "clip", "siglip", ... (see LAYOUTS); filled from the loaded config ("" = any)
    max_length: int | None = None  # longest token sequence; None = the tokenizer's / model's limit


@dataclass(frozen=True)
class Parts:
    """Where a transformers tower keeps its insides (names under its encoder module)."""

    blocks: str = "encoder.layers"  # dotted path of the list of transformer blocks
    final: tuple[str, ...] = ()  # children after the last block that shape the pooled output (absent ones skipped)
    sublayers: tuple[str, str] | None = ("self_attn", "mlp")  # attention / MLP of a block; None: not separate


_VISION = Parts(final=("post_layernorm",))
_CLIP_TEXT = Parts(final=("final_layer_norm",))
_BERT = Parts(blocks="encoder.layer", sublayers=None)  # post-norm blocks: residual sums inside sub-modules


@dataclass(frozen=True)
class Layout:
    """Where a dual encoder keeps its towers (attribute names on the transformers model)."""

    vision: str  # vision encoder; its ``pooler_output`` is the pooled image feature
    vision_proj: str | None  # linear map into the shared space; None = the pooled output already is
    text: str  # text encoder; pooled as ``text_pool`` says
    text_proj: str | None  # linear map into the shared space; None = the pooled output already is
    text_padding: str = "longest"  # how captions are padded: "longest" or "max_length"
    text_pool: str = "pooler"  # pooled text feature: the encoder's "pooler" output or its "cls" token
    text_inputs: tuple[str, ...] = TEXT_INPUTS  # batch keys the text encoder takes
    vision_parts: Parts = _VISION  # blocks and final parts of the vision encoder
    text_parts: Parts = _CLIP_TEXT  # blocks and final parts of the text encoder
    image_mean: tuple[float, float, float] = CLIP_MEAN  # pixel mean when the image processor gives none
    image_std: tuple[float, float, float] = CLIP_STD  # pixel std when the image processor gives none


# Each layout reproduces the model's get_image_features / get_text_features (transformers 5.x source).
_CLIP = Layout("vision_model", "visual_projection", "text_model", "text_projection")
_HALF = (0.5, 0.5, 0.5)
LAYOUTS: dict[str, Layout] = {
    "clip": _CLIP,
    "metaclip_2": _CLIP,
    "siglip": Layout("vision_model", None, "text_model", None, "max_length",  # heads inside the encoders
                     vision_parts=Parts(final=("post_layernorm", "head")),
                     text_parts=Parts(final=("final_layer_norm", "head")), image_mean=_HALF, image_std=_HALF),
    "chinese_clip": Layout("vision_model", "visual_projection", "text_model", "text_projection", text_pool="cls",
                           text_inputs=BERT_INPUTS, text_parts=_BERT),  # BERT text encoder, [CLS] token
    "altclip": Layout("vision_model", "visual_projection", "text_model", "text_projection", text_pool="cls",
                      text_inputs=BERT_INPUTS,  # XLM-R text encoder, first token after its LN + linear map
                      text_parts=Parts(blocks="roberta.encoder.layers", final=("pre_LN", "transformation"), sublayers=None)),
}


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x, dim=-1)


class _HFTower(nn.Module):
    """An encoder of a transformers dual encoder (shared, not copied) and its projection."""

    modality = ""

    def __init__(self, encoder: nn.Module, projection: nn.Module | None, embed_dim: int, hf_config: Any,
                 parts: Parts) -> None:
        super().__init__()
        self.encoder = encoder
        self.head_layer = projection if projection is not None else nn.Identity()
        self.embed_dim = embed_dim
        self.width = projection.in_features if projection is not None else embed_dim  # pooled feature width
        self.hf_config = hf_config  # the full transformers config (written to checkpoint assets)
        self.parts = parts  # where its blocks and final parts are

    def _inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def trunk(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features ``[B, width]`` before the projection (transformers' ``pooler_output``)."""
        return self.encoder(**self._inputs(batch), return_dict=True).pooler_output

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Project pooled features into the shared space and L2-normalise them."""
        return _normalize(self.head_layer(features))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, embed_dim]`` L2-normalised embeddings (= normalised ``get_*_features``)."""
        return self.head(self.trunk(batch))

    def forward_features(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Token features ``[B, N, width]``: the embeddings and the output of each layer."""
        out = self.encoder(**self._inputs(batch), output_hidden_states=True, return_dict=True)
        return list(out.hidden_states)

    @property
    def trunk_module(self) -> nn.Module:
        return self.encoder

    def blocks(self) -> list[nn.Module]:
        return list(self.encoder.get_submodule(self.parts.blocks))

    def sublayers(self, block: nn.Module) -> tuple[nn.Module, nn.Module]:
        if self.parts.sublayers is None:
            raise ConfigError(f"{type(block).__name__} is a post-norm block: its residual sums are inside its "
                              "sub-modules, so it has no separate attention / MLP sub-layers")
        attn, mlp = self.parts.sublayers
        return block.get_submodule(attn), block.get_submodule(mlp)

    def final_parts(self) -> list[nn.Module]:
        children = dict(self.encoder.named_children())
        return [children[name] for name in self.parts.final if name in children]

    def token_embedding(self) -> nn.Embedding | None:
        return None


class HFImageTower(_HFTower):
    """Image tower: ``vision_model`` (+ ``visual_projection``) of a transformers dual encoder."""

    modality = "image"

    def __init__(self, encoder: nn.Module, projection: nn.Module | None, embed_dim: int, hf_config: Any,
                 parts: Parts = _VISION, processor: Any = None) -> None:
        super().__init__(encoder, projection, embed_dim, hf_config, parts)
        self.processor = processor  # the transformers image processor, or None (written to assets)

    def _inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"pixel_values": batch["pixel_values"]}


class HFTextTower(_HFTower):
    """Text tower: ``text_model`` (+ ``text_projection``) of a transformers dual encoder."""

    modality = "text"

    def __init__(self, encoder: nn.Module, projection: nn.Module | None, embed_dim: int, hf_config: Any,
                 parts: Parts = _CLIP_TEXT, pool: str = "pooler", inputs: tuple[str, ...] = TEXT_INPUTS) -> None:
        super().__init__(encoder, projection, embed_dim, hf_config, parts)
        self.pool = pool  # "pooler": the encoder's pooler_output; "cls": its first token
        self.inputs = inputs  # batch keys passed to the encoder

    def _inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: batch[k] for k in self.inputs if k in batch}

    def trunk(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.encoder(**self._inputs(batch), return_dict=True)
        return out.pooler_output if self.pool == "pooler" else out.last_hidden_state[:, 0, :]

    def token_embedding(self) -> nn.Embedding | None:
        return self.encoder.get_input_embeddings()


# ---------------------------------------------------------------------------------------- loading
def _looks_local(name: str) -> bool:
    """True when ``name`` can only be a local path (a hub name is ``name`` or ``org/name``)."""
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or Path(name).is_absolute()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_hf_config(source: str, checkpoint: bool = False) -> Any:
    """The transformers config of ``source`` (a folder or hub name), checked to be a supported dual
    encoder. Missing/unreadable sources are CheckpointErrors; an unsupported type is a ConfigError
    (a CheckpointError when ``checkpoint``: the assets of an xmodal checkpoint)."""
    from transformers import AutoConfig

    path = Path(source).expanduser()
    if not path.exists() and _looks_local(source):
        raise CheckpointError(f"{source}: no such folder")
    if path.is_dir() and not (path / "config.json").is_file():
        raise CheckpointError(f"{source}: not a transformers model folder (no config.json)")
    try:
        config = AutoConfig.from_pretrained(str(path) if path.exists() else source)
    except (OSError, ValueError) as exc:
        where = "folder" if path.exists() else "folder, nor a model on the Hugging Face hub (or in its cache)"
        raise CheckpointError(f"{source}: cannot load a transformers config from this {where} ({_first_line(exc)})") from None
    if config.model_type not in LAYOUTS:
        error = CheckpointError if checkpoint else ConfigError
        raise error(
            f"{source}: model type {config.model_type!r} is not a supported dual encoder; "
            f"supported: {sorted(LAYOUTS)}"
        )
    return config


def _load_model(source: str, config: Any) -> nn.Module:
    """Pretrained weights of ``source`` (float32, eval mode)."""
    from transformers import AutoModel

    path = Path(source).expanduser()
    try:
        return AutoModel.from_pretrained(str(path) if path.exists() else source, config=config, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{source}: cannot load the model weights ({_first_line(exc)})") from None


def _load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{source}: cannot load the tokenizer ({_first_line(exc)})") from None


def _load_processor(source: str) -> Any:
    """The image processor of ``source`` (Pillow backend), or None when it has none."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(source, backend="pil")
    except (OSError, ValueError, ImportError, KeyError):
        return None


# ------------------------------------------------------------------------------------------ specs
def _get(hf_setting: Any, key: str) -> Any:
    """``hf_setting[key]`` or ``hf_setting.key`` of a transformers image processor or one of its sizes
    (dicts or SizeDicts), None if absent."""
    if hf_setting is None:
        return None
    if isinstance(hf_setting, dict):
        return hf_setting.get(key)
    return getattr(hf_setting, key, None)


def _resample_name(value: Any) -> str:
    from PIL import Image

    if isinstance(value, str):
        return value.lower()
    try:
        return Image.Resampling(int(value)).name.lower()
    except (TypeError, ValueError):
        return "bicubic"


def image_spec(processor: Any, hf_config: Any) -> ImageSpec:
    """ImageSpec from the image processor's settings, else from the vision config with defaults."""
    layout = LAYOUTS[hf_config.model_type]
    default_mean, default_std = layout.image_mean, layout.image_std
    size = int(hf_config.vision_config.image_size)
    if processor is None:
        return ImageSpec(size=size, mean=default_mean, std=default_std, resample="bicubic")
    crop = _get(processor, "crop_size") if _get(processor, "do_center_crop") else None
    resize = _get(processor, "size")
    side = _get(crop, "height") or _get(resize, "height") or _get(resize, "shortest_edge") or size
    mean = _get(processor, "image_mean") or default_mean
    std = _get(processor, "image_std") or default_std
    return ImageSpec(
        size=int(side),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        resample=_resample_name(_get(processor, "resample")),
    )


def text_spec(tokenizer: Any, hf_config: Any, max_length: int | None) -> TextSpec:
    """TextSpec: the tokenizer, its length limit and the padding the model was trained with."""
    if max_length is None:
        limits = [int(getattr(hf_config.text_config, "max_position_embeddings", 77))]
        model_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < 1_000_000:
            limits.append(model_max)
        max_length = min(limits)
    padding = LAYOUTS[hf_config.model_type].text_padding
    return TextSpec(tokenizer=tokenizer, max_length=int(max_length), padding=padding)


# -------------------------------------------------------------------------------------- assembly
def _embed_dims(hf: nn.Module, layout: Layout) -> tuple[int, int]:
    """Output sizes of the image and text towers."""
    cfg = hf.config
    image = getattr(hf, layout.vision_proj).out_features if layout.vision_proj else cfg.vision_config.hidden_size
    text_cfg = cfg.text_config
    text = (
        getattr(hf, layout.text_proj).out_features
        if layout.text_proj
        else getattr(text_cfg, "projection_size", None) or text_cfg.hidden_size
    )
    return int(image), int(text)


def _child(hf: nn.Module, name: str | None) -> nn.Module | None:
    return getattr(hf, name) if name else None


def assemble(hf: nn.Module, tokenizer: Any, processor: Any, cfg: HFClipConfig) -> XModel:
    """An XModel whose towers share the modules of the transformers dual encoder ``hf``."""
    layout = LAYOUTS[hf.config.model_type]
    image_dim, text_dim = _embed_dims(hf, layout)
    if image_dim != text_dim:
        raise ConfigError(f"{cfg.name_or_path}: image embeddings ({image_dim}) and text embeddings ({text_dim}) differ in size")
    image = HFImageTower(getattr(hf, layout.vision), _child(hf, layout.vision_proj), image_dim, hf.config,
                         layout.vision_parts, processor)
    text = HFTextTower(getattr(hf, layout.text), _child(hf, layout.text_proj), text_dim, hf.config,
                       layout.text_parts, pool=layout.text_pool, inputs=layout.text_inputs)
    ispec = image_spec(processor, hf.config)
    specs = {"image": ispec, "video": VideoSpec(image=ispec), "text": text_spec(tokenizer, hf.config, cfg.max_length)}
    scale = float(hf.logit_scale.detach().reshape(-1)[0])
    bias = getattr(hf, "logit_bias", None)
    bias = float(bias.detach().reshape(-1)[0]) if isinstance(bias, torch.Tensor) else 0.0
    model = XModel("hf_clip", cfg, {"image": image, "text": text}, specs, logit_scale=scale, logit_bias=bias)
    return model.eval()


class HFClipBackbone:
    """Registered as ``hf_clip``: CLIP-family dual encoders from transformers."""

    config_cls = HFClipConfig
    by_name = False  # needs a hub name or folder: load("openai/clip-vit-base-patch32"), not load("hf_clip")

    def build(self, cfg: HFClipConfig, assets: Path | None = None) -> XModel:
        """``assets=None``: load ``cfg.name_or_path`` with its pretrained weights. Otherwise rebuild
        the architecture (random weights) from a checkpoint's ``assets`` folder, offline."""
        from transformers import AutoModel

        if not cfg.name_or_path and assets is None:
            raise ConfigError("hf_clip: name_or_path is empty; give a hub name or a model folder")
        source = str(assets) if assets is not None else cfg.name_or_path
        hf_config = load_hf_config(source, checkpoint=assets is not None)
        if cfg.model_type and cfg.model_type != hf_config.model_type:
            error = CheckpointError if assets is not None else ConfigError
            raise error(f"{source}: model type is {hf_config.model_type!r}, the config says {cfg.model_type!r}")
        if assets is None:
            hf = _load_model(source, hf_config)
        else:
            hf = AutoModel.from_config(hf_config, dtype=torch.float32)
        local = Path(source).expanduser()
        source = str(local) if local.exists() else source
        tokenizer, processor = _load_tokenizer(source), _load_processor(source)
        return assemble(hf, tokenizer, processor, dataclasses.replace(cfg, model_type=hf_config.model_type))

    def save_assets(self, model: XModel, assets: Path) -> None:
        """Write the transformers config, tokenizer and image processor to ``assets`` (no weights)."""
        assets = Path(assets)
        if assets.exists():
            shutil.rmtree(assets)
        assets.mkdir(parents=True)
        image = model.tower("image")
        image.hf_config.save_pretrained(assets)
        model.spec("text").tokenizer.save_pretrained(assets)
        if image.processor is not None:
            image.processor.save_pretrained(assets)


def load_hf(name_or_path: str | Path, **config: Any) -> XModel:
    """Load a transformers CLIP-family model (hub name or folder) as an XModel; ``config`` keys are
    HFClipConfig fields, e.g. ``load_hf("google/siglip-base-patch16-224", max_length=64)``."""
    return BACKBONES.get("hf_clip").build(HFClipConfig(name_or_path=str(name_or_path), **config))


BACKBONES.register("hf_clip", HFClipBackbone())
