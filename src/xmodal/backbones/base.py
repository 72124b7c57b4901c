"""Encoders in one shared space, the model that holds them, and checkpoint I/O.

A checkpoint folder holds ``xmodal.json`` (which backbone, its config), ``model.safetensors`` (all
weights) and ``assets/`` (what the backbone needs to rebuild its architecture offline: transformers
configs and tokenizers). Nothing is unpickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn

from xmodal.config import from_dict, to_dict
from xmodal.errors import CheckpointError, ConfigError
from xmodal.modalities import MODALITIES
from xmodal.registry import Registry

FORMAT = "xmodal"
FORMAT_VERSION = 1
CONFIG_FILE = "xmodal.json"
WEIGHTS_FILE = "model.safetensors"


@runtime_checkable
class Encoder(Protocol):
    """A tower: one modality in, L2-normalised ``[B, embed_dim]`` embeddings out.

    A tower is a trunk (the feature extractor) and a head (the projection into the shared space):
    ``forward = head . trunk``, so the training engine can cache a locked trunk's output. Strategies
    that read or modify the inside of a tower (side networks, adapters, prompts, partial tuning) ask
    it for its blocks, their sub-layers and the parts after the last block, never for attributes."""

    modality: str  # the registered modality it reads
    embed_dim: int  # size of the shared space it maps into
    width: int  # width of the pooled trunk features (what ``trunk`` returns) = token width of its blocks
    head_layer: nn.Module  # the projection into the shared space (nn.Identity when there is none)

    @property
    def trunk_module(self) -> nn.Module:
        """The feature extractor: every module of the tower but ``head_layer``."""
        ...

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, embed_dim]`` L2-normalised embeddings of a collated batch."""
        ...

    def trunk(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features ``[B, width]`` (before the projection)."""
        ...

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Project pooled features into the shared space and L2-normalise them."""
        ...

    def forward_features(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Intermediate token features ``[B, N, width]``, one per stage / layer."""
        ...

    def blocks(self) -> list[nn.Module]:
        """The trunk's transformer blocks, input side first; ``[]`` when it has none (a ConvNet)."""
        ...

    def sublayers(self, block: nn.Module) -> tuple[nn.Module, nn.Module]:
        """(attention, MLP) sub-layers of one of ``blocks()``, whose outputs are added to the residual
        stream (a hook on them acts before the residual sum); a ConfigError when they are not separate
        modules (post-norm BERT blocks)."""
        ...

    def final_parts(self) -> list[nn.Module]:
        """Modules after the last block that shape the pooled features (final norm, SigLIP's MAP head)."""
        ...

    def token_embedding(self) -> nn.Embedding | None:
        """The input word-embedding table of a text tower; None for towers that read no tokens."""
        ...


def per_frame(fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run ``fn`` (a tower or one of its methods) on every frame of a batch of sequences at once: each
    tensor of ``batch`` is ``[B, T, ...]``; ``fn`` gets them as ``[B*T, ...]`` and returns ``[B*T, ...]``,
    given back as ``[B, T, ...]``."""
    b, t = next(iter(batch.values())).shape[:2]
    out = fn({k: v.flatten(0, 1) for k, v in batch.items()})
    return out.view(b, t, *out.shape[1:])


class XModel(nn.Module):
    """Towers of several modalities mapping into one shared embedding space.

    A modality made of another's frames (video: ``frames_of == "image"``) without a tower of its own
    goes through the tower of its frames frame by frame and is averaged. ``logit_scale`` (log of the
    inverse temperature) and ``logit_bias`` (SigLIP) are the alignment parameters shared by the losses
    and zero-shot scoring. ``projections`` (modality -> module, empty unless a backbone adds some: a
    bound model's trained text head) map a tower's embeddings once more, re-normalised."""

    def __init__(
        self,
        backbone: str,
        config: Any,
        towers: dict[str, nn.Module],
        specs: dict[str, Any],
        logit_scale: float = math.log(1 / 0.07),
        logit_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.towers = nn.ModuleDict(towers)
        self.specs = specs
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(logit_bias)))
        self.projections = nn.ModuleDict()

    @property
    def embed_dim(self) -> int:
        return next(iter(self.towers.values())).embed_dim

    @property
    def modalities(self) -> list[str]:
        """Its towers' modalities, then those it encodes frame by frame (video through the image tower)."""
        names = list(self.towers)
        return names + [m for m in MODALITIES if m not in names and MODALITIES.get(m).frames_of in names]

    def spec(self, modality: str) -> Any:
        """Preprocessing settings for ``modality`` (ImageSpec, VideoSpec, AudioSpec, TextSpec)."""
        if modality not in self.specs:
            raise ConfigError(f"model has no {modality!r} tower; it has {self.modalities}")
        return self.specs[modality]

    def frames_source(self, modality: str) -> str | None:
        """The modality whose tower encodes ``modality`` frame by frame (it is a sequence of that
        modality's items, ``frames_of``, and has no tower of its own), else None."""
        if modality in self.towers or modality not in MODALITIES:
            return None
        return MODALITIES.get(modality).frames_of

    def tower(self, modality: str) -> nn.Module:
        """The tower that encodes ``modality`` (for a sequence of frames: the tower of its frames)."""
        name = self.frames_source(modality) or modality
        if name not in self.towers:
            raise ConfigError(f"model has no {modality!r} tower; it has {self.modalities}")
        return self.towers[name]

    def encode(self, modality: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, D]`` L2-normalised embeddings of a collated batch of ``modality``; a sequence of frames
        without its own tower is the normalised average of its frames' embeddings."""
        return self.project(modality, self.encode_tower(modality, batch))

    def encode_tower(self, modality: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What :meth:`encode` gives before ``modality``'s projection (the same when it has none)."""
        source = self.frames_source(modality)
        if source is not None:
            return _norm(per_frame(lambda b: self.encode(source, b), batch).mean(1))
        return self.tower(modality)(batch)

    def as_towers(self) -> "XModel":
        """Its towers as an XModel (see :class:`TowerSource`): itself."""
        return self

    def project(self, modality: str, embeddings: torch.Tensor) -> torch.Tensor:
        """``modality``'s tower embeddings through its projection, re-normalised (as they are without one)."""
        if modality not in self.projections:
            return embeddings
        return _norm(self.projections[modality](embeddings))

    # ---------------------------------------------------------------- checkpoints
    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``xmodal.json``, ``model.safetensors`` and ``assets/`` to the folder ``path``."""
        from safetensors.torch import save_model

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        BACKBONES.get(self.backbone).save_assets(self, path / "assets")
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone": self.backbone,
            "config": to_dict(self.config),
            "modalities": self.modalities,
            "embed_dim": self.embed_dim,
        }
        tmp = path / (WEIGHTS_FILE + ".tmp")
        save_model(self, str(tmp), force_contiguous=True)  # (channels-last convolution weights)
        tmp.replace(path / WEIGHTS_FILE)
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "XModel":
        """Load a folder written by :meth:`save_pretrained`; a CheckpointError says what is wrong."""
        path = Path(path)
        meta = read_meta(path)
        backbone = BACKBONES.get(meta["backbone"])
        try:
            cfg = from_dict(backbone.config_cls, meta["config"])
        except ConfigError as exc:
            raise CheckpointError(f"{path / CONFIG_FILE}: config does not match the code ({exc})") from None
        try:
            model = backbone.build(cfg, assets=path / "assets")
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: cannot rebuild the {meta['backbone']} model ({exc})") from None
        load_weights(model, path / WEIGHTS_FILE)
        return model


@runtime_checkable
class TowerSource(Protocol):
    """A model whose towers can be added to (``xmodal.bind``): an XModel (itself), or a model that puts its
    own encoding paths into towers of an XModel (a transferred video model: its adapted towers, frozen)."""

    def as_towers(self) -> XModel:
        """Its towers, as an XModel sharing their modules (a new tower added to it leaves them as they are)."""
        ...


def _norm(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x, dim=-1)


def read_meta(path: Path) -> dict[str, Any]:
    """Read and check ``xmodal.json`` of a checkpoint folder."""
    file = path / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    if not file.is_file():
        raise CheckpointError(f"{path}: not an xmodal checkpoint (no {CONFIG_FILE})")
    try:
        meta = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not an xmodal checkpoint (format is not {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{file}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}")
    if meta.get("backbone") not in BACKBONES:
        raise CheckpointError(f"{file}: unknown backbone {meta.get('backbone')!r}; known: {BACKBONES.names()}")
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{file}: 'config' is missing or not an object")
    return meta


def load_weights(model: nn.Module, file: Path, strict: bool = True) -> None:
    """Load safetensors weights into ``model``; truncation and key/shape mismatch are CheckpointErrors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    if not file.is_file():
        raise CheckpointError(f"{file}: weights file missing")
    try:
        missing, unexpected = load_model(model, str(file), strict=False)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: unreadable or truncated weights ({exc})") from None
    except RuntimeError as exc:  # shape mismatch
        raise CheckpointError(f"{file}: weights do not fit the model ({str(exc).splitlines()[0]})") from None
    # a module shared by several towers (a transferred model's paths) has one name per tower, and the file holds
    # one of them; safetensors calls the others "unexpected" when a BatchNorm under them put its counter back
    # under their name: a name of the model itself is never unexpected
    own = model.state_dict().keys() if unexpected else set()  # (the whole state dict: built once, not per key)
    unexpected = [k for k in unexpected if k not in own]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{file}: weights do not match the model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )


@runtime_checkable
class Backbone(Protocol):
    """A registered backbone: a config dataclass, a builder and an asset writer."""

    config_cls: type  # its config dataclass (one comment per field)
    by_name: bool  # True: ``xmodal.load(<name>)`` builds it from its config's defaults (plus keyword
    # overrides); False: it needs a source named by the caller (hf_clip: a hub name or a folder)

    def build(self, cfg: Any, assets: Path | None = None) -> XModel:
        """Build the model. ``assets=None``: load pretrained weights named in ``cfg``; otherwise
        rebuild the architecture offline from ``assets`` (weights are loaded afterwards)."""
        ...

    def save_assets(self, model: XModel, assets: Path) -> None:
        """Write what :meth:`build` needs to rebuild ``model`` from ``assets``."""
        ...


BACKBONES: Registry[Backbone] = Registry("backbone")
