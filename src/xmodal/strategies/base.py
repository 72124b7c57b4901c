"""Image-to-video transfer strategies: the protocol, the registry and the video classifier.

A strategy WRAPS an aligned :class:`~xmodal.backbones.base.XModel` (adds modules around it) or
INJECTS modules into its image tower (hooks, PEFT layers); it never subclasses the model. What it
returns is a :class:`VideoClassifier`: the base model, the strategy's own modules (``added``) and the
few base parameters it unfreezes. ``frozen`` says whether the backbone stays untouched, so the one
training engine (``transfer/train.py``) caches features instead of re-encoding every epoch.

Saved transfers hold only what the strategy adds (``strategy.safetensors``) and a pointer to the
base model (``transfer.json``); :func:`load_transfer` rebuilds base + strategy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from xmodal.backbones.base import per_frame
from xmodal.config import from_dict, to_dict
from xmodal.errors import CheckpointError
from xmodal.registry import Registry

TRANSFER_FORMAT = "xmodal-transfer"
META_FILE = "transfer.json"
STATE_FILE = "strategy.safetensors"

Reader = Callable[["VideoClassifier", torch.Tensor], torch.Tensor]


@runtime_checkable
class Strategy(Protocol):
    """A registered transfer method. Three things to provide (cf. PEFT's tuner = config + layer + model):

    - ``config_cls``: its config dataclass (a one-line comment per field);
    - ``frozen``: True when the backbone is untouched (the engine then trains on cached features);
    - ``apply(model, classes, cfg)``: wrap or inject into ``model`` and return a VideoClassifier whose
      trainable parameters are exactly the strategy's own;

    and its learning-rate defaults (``default_lr``, ``backbone_lr_scale``), read by ``train.py``."""

    config_cls: type  # its config dataclass
    frozen: bool  # True: the backbone is untouched (the engine trains on cached features)
    default_lr: float | None  # peak rate when TransferConfig.lr is 0; None = the engine's (TransferConfig.fit.lr)
    backbone_lr_scale: float  # multiplier of that rate for the base weights it unfreezes (1.0 when none)
    paper: str  # the method's paper, for reports

    def apply(self, model: Any, classes: Sequence[str], cfg: Any) -> "VideoClassifier": ...


STRATEGIES: Registry[Strategy] = Registry("strategy")


def frame_trunk(clf: "VideoClassifier", pixels: torch.Tensor) -> torch.Tensor:
    """``[B, T, W]`` pooled trunk features of each frame (before the projection into the shared space)."""
    return clf.per_frame(clf.vision.trunk, pixels)


class VideoClassifier(nn.Module):
    """Classify videos ``pixel_values [B, T, 3, H, W]`` into ``classes`` with a transferred model.

    ``features(pixels)`` runs the backbone (what is cached when ``frozen``), ``classify(features)``
    runs the strategy's head, ``forward = classify . features``. ``embed(pixels)`` is the clip's
    embedding in the shared space (for video-text retrieval)."""

    def __init__(self, base: nn.Module, classes: Sequence[str], strategy: str, config: Any, added: dict[str, nn.Module],
                 frozen: bool, reader: Reader = frame_trunk) -> None:
        super().__init__()
        self.base = base
        self.classes = list(classes)
        self.strategy, self.config, self.frozen = strategy, config, frozen
        self.added = nn.ModuleDict(added)
        self.reader = reader
        self.context: dict[str, Any] = {}  # per-call facts injected modules read (e.g. frames per clip)
        self.merge_fn: Callable[[], None] | None = None  # folds injected weights into the base (LoRA)

    @property
    def vision(self) -> nn.Module:
        return self.base.tower("image")

    def per_frame(self, fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        """``fn`` (the image tower or one of its methods) on every frame of ``pixels`` ``[B, T, 3, H, W]``
        at once, as ``[B, T, ...]``; injected modules read the frames per clip from ``context``."""
        self.context["frames"] = pixels.shape[1]
        return per_frame(fn, {"pixel_values": pixels})

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.reader(self, pixels)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.added["head"](features)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` class logits."""
        return self.classify(self.features(pixels))

    def cache_inputs(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a frozen strategy trains from, computed once per clip."""
        return {"features": self.features(pixels)}

    def loss(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = inputs["features"] if "features" in inputs else self.features(inputs["pixel_values"])
        return {"loss": nn.functional.cross_entropy(self.classify(feats), labels)}

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` L2-normalised frame-averaged clip embedding through the (possibly adapted) tower."""
        return nn.functional.normalize(self.per_frame(self.vision, pixels).mean(1), dim=-1)

    def inference_modules(self) -> list[nn.Module]:
        """Modules a video prediction runs (for parameter counts): the image tower and the additions."""
        return [self.vision, self.added]

    def merge(self) -> None:
        """Fold injected weights into the base for inference (no-op for strategies without it)."""
        if self.merge_fn is not None:
            self.merge_fn()
            self.merge_fn = None

    # ------------------------------------------------------------------------- what the strategy owns
    def own_state(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers the strategy added or changed: everything under ``added``, every
        trainable base parameter and the buffers of modules that own one (e.g. norm statistics)."""
        state: dict[str, torch.Tensor] = {}
        for name, module in self.named_modules():
            own = list(module.named_parameters(recurse=False))
            inside = name == "added" or name.startswith("added.")
            if not inside and not any(p.requires_grad for _, p in own):
                continue
            for key, t in [*own, *module.named_buffers(recurse=False)]:
                if inside or not isinstance(t, nn.Parameter) or t.requires_grad:
                    state[f"{name}.{key}" if name else key] = t.detach()
        return state

    def save(self, path: str | Path, base: str | Path) -> Path:
        """Write ``transfer.json`` (strategy, config, classes, ``base`` pointer) and the strategy's own
        weights to the folder ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous().clone() for k, v in self.own_state().items()}
        save_file(state, str(path / STATE_FILE))
        meta = {"format": TRANSFER_FORMAT, "strategy": self.strategy, "config": to_dict(self.config),
                "classes": self.classes, "base": str(base), "frozen": self.frozen}
        (path / META_FILE).write_text(json.dumps(meta, indent=2))
        return path


def is_transfer(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def load_transfer(path: str | Path, base: Any = None) -> VideoClassifier:
    """Rebuild a saved transfer: load its base (or use the given ``base`` model), re-apply the
    strategy with its saved config, load the strategy's weights."""
    from safetensors.torch import load_file

    from xmodal.api import load

    path = Path(path)
    if not is_transfer(path):
        raise CheckpointError(f"{path}: not a transfer checkpoint (no {META_FILE})")
    try:
        meta = json.loads((path / META_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path / META_FILE}: not valid JSON ({exc})") from None
    if meta.get("format") != TRANSFER_FORMAT:
        raise CheckpointError(f"{path / META_FILE}: format is not {TRANSFER_FORMAT!r}")
    strategy = STRATEGIES.get(meta["strategy"])
    ref = Path(meta["base"])
    ref = ref if ref.is_absolute() or not (path / ref).exists() else path / ref
    model = base if base is not None else load(ref if ref.exists() else meta["base"])
    clf = strategy.apply(model, meta["classes"], from_dict(strategy.config_cls, meta["config"]))
    file = path / STATE_FILE
    try:
        state = load_file(str(file))
    except Exception as exc:  # safetensors raises several types for truncated files
        raise CheckpointError(f"{file}: unreadable weights ({exc})") from None
    own = clf.own_state()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{file}: weights do not match the strategy: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for key, value in state.items():
            if own[key].shape != value.shape:
                raise CheckpointError(f"{file}: {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
            own[key].copy_(value)
    return clf.eval()


def freeze(model: nn.Module) -> nn.Module:
    """Turn off gradients of every parameter of ``model`` (strategies then unfreeze their own)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model
