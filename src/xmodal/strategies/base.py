"""Image-to-video transfer strategies: the protocol, the registry and the transferred video model.

A strategy WRAPS an aligned :class:`~xmodal.backbones.base.XModel` (adds modules around it) or
INJECTS modules into its image tower (hooks, PEFT layers); it never subclasses the model. What it
returns is a :class:`VideoModel`: the base model, the strategy's own modules (``added``) and the few
base parameters it unfreezes, yielding per clip a sequence of frame features ``[B, T, seq_width]``.
A task (``xmodal.tasks``) then attaches its head, so every strategy serves every task. ``frozen``
says whether the backbone stays untouched, so the one training engine (``strategies/train.py``)
caches features instead of re-encoding every epoch.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from xmodal.backbones.base import per_frame
from xmodal.registry import Registry
from xmodal.tasks.heads import HeadConfig

Reader = Callable[["VideoModel", torch.Tensor], torch.Tensor]  # pixels -> what a frozen strategy caches
Neck = Callable[["VideoModel", dict[str, torch.Tensor]], torch.Tensor]  # inputs -> [B, T, seq_width]
Cache = Callable[["VideoModel", torch.Tensor], dict[str, torch.Tensor]]  # pixels -> cached inputs
AuxLoss = Callable[["VideoModel", dict[str, torch.Tensor], torch.Tensor], dict[str, torch.Tensor]]
FrameEmbed = Callable[["VideoModel", torch.Tensor], torch.Tensor]  # [B, T, seq_width] -> [B, T, D] in the shared space


def trunk_to_space(vm: "VideoModel", seq: torch.Tensor) -> torch.Tensor:
    """Frame trunk features into the shared space through the image tower's own projection."""
    return vm.vision.head(seq)


def already_in_space(vm: "VideoModel", seq: torch.Tensor) -> torch.Tensor:
    """Frame embeddings that are in the shared space already (normalised)."""
    return nn.functional.normalize(seq, dim=-1)


@runtime_checkable
class Strategy(Protocol):
    """A registered transfer method. Three things to provide (cf. PEFT's tuner = config + layer + model):

    - ``config_cls``: its config dataclass (a one-line comment per field);
    - ``frozen``: True when the backbone is untouched (the engine then trains on cached features);
    - ``apply(model, cfg)``: wrap or inject into ``model`` and return a VideoModel whose trainable
      parameters are exactly the strategy's own (the task head is attached afterwards);

    and its learning-rate defaults (``default_lr``, ``backbone_lr_scale``), read by ``train.py``."""

    config_cls: type  # its config dataclass
    frozen: bool  # True: the backbone is untouched (the engine trains on cached features)
    default_lr: float | None  # peak rate when TransferConfig.lr is 0; None = the engine's (TransferConfig.fit.lr)
    backbone_lr_scale: float  # multiplier of that rate for the base weights it unfreezes (1.0 when none)
    paper: str  # the method's paper, for reports

    def apply(self, model: Any, cfg: Any) -> "VideoModel": ...


STRATEGIES: Registry[Strategy] = Registry("strategy")


def frame_trunk(vm: "VideoModel", pixels: torch.Tensor) -> torch.Tensor:
    """``[B, T, W]`` pooled trunk features of each frame (before the projection into the shared space)."""
    return vm.per_frame(vm.vision.trunk, pixels)


def frame_embeddings(vm: "VideoModel", pixels: torch.Tensor) -> torch.Tensor:
    """``[B, T, D]`` L2-normalised embeddings of each frame in the shared space."""
    return vm.per_frame(vm.vision, pixels)


def read_features(vm: "VideoModel", inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The default neck: the cached ``features``, else the reader run on ``pixel_values``."""
    return inputs["features"] if "features" in inputs else vm.reader(vm, inputs["pixel_values"])


def cache_features(vm: "VideoModel", pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The default cache of a frozen strategy: the reader's output per clip."""
    return {"features": vm.reader(vm, pixels)}


class VideoModel(nn.Module):
    """A transferred video model: an aligned base, what a strategy adds or unfreezes, and a task head.

    Strategy side: ``inputs(pixels)`` is what the engine feeds per clip (``cache(pixels)``, computed
    once, for frozen strategies; the pixels otherwise) and ``sequence(inputs)`` runs the ``neck`` to
    frame features ``[B, T, seq_width]``. Task side (:meth:`attach`): ``head`` (its ``video(seq)`` is
    the video-only output), ``task``, ``task_config`` and ``meta`` (what the head was built for).
    ``forward(pixels)`` = ``head.video(sequence(pixels))``. Texts are encoded by :meth:`encode_texts`,
    through the strategy's text module (``added["text_context"]``) when it adapts the text side."""

    def __init__(self, base: nn.Module, strategy: str, config: Any, added: dict[str, nn.Module], frozen: bool,
                 reader: Reader = frame_trunk, seq_width: int | None = None, trains: bool = True,
                 head_config: HeadConfig | None = None) -> None:
        super().__init__()
        self.base, self.strategy, self.config, self.frozen, self.reader = base, strategy, config, frozen, reader
        self.added = nn.ModuleDict(added)
        self.seq_width = seq_width or self.vision.width  # F of the frame feature sequence
        self.trains = trains  # False: nothing trains (zero-shot): tasks attach their parameter-free head
        self.head_config = head_config or HeadConfig()  # temporal pooling the task heads use
        known = STRATEGIES.get(strategy)
        self.default_lr, self.backbone_lr_scale = known.default_lr, known.backbone_lr_scale
        self.neck: Neck = read_features
        self.cache: Cache = cache_features
        self.aux_loss: AuxLoss | None = None  # an extra training loss of the strategy (distillation)
        # the sequence's frames in the shared space: the tower's projection of trunk features (the default
        # reader), or None when the sequence is not in the tower's feature space (tasks then learn it all)
        self.frame_embed: FrameEmbed | None = trunk_to_space if reader is frame_trunk else None
        self.backbone_at_inference = True  # False: the strategy replaces the backbone at inference
        self.context: dict[str, Any] = {}  # per-call facts injected modules read (e.g. frames per clip)
        self.merge_fn: Callable[[], None] | None = None  # folds injected weights into the base (LoRA)
        self.head: nn.Module | None = None
        self.task, self.task_config, self.meta = "", None, {}
        self._texts: dict[str, torch.Tensor] = {}  # frozen text embeddings, by text

    @property
    def vision(self) -> nn.Module:
        return self.base.tower("image")

    @property
    def embed_dim(self) -> int:
        return self.base.embed_dim

    @property
    def adapts_text(self) -> bool:
        """True when the strategy trains something on the text side (CoOp context)."""
        return "text_context" in self.added

    def attach(self, task: str, task_config: Any, meta: dict[str, Any], head: nn.Module) -> "VideoModel":
        """Put the task's head on top (a submodule: it trains and is saved with the strategy)."""
        self.task, self.task_config, self.meta, self.head = task, task_config, dict(meta), head
        return self

    def per_frame(self, fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        """``fn`` (the image tower or one of its methods) on every frame of ``pixels`` ``[B, T, 3, H, W]``
        at once, as ``[B, T, ...]``; injected modules read the frames per clip from ``context``."""
        self.context["frames"] = pixels.shape[1]
        return per_frame(fn, {"pixel_values": pixels})

    def inputs(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the engine feeds for ``pixels``: the cache of a frozen strategy, else the pixels."""
        return self.cache(self, pixels) if self.frozen else {"pixel_values": pixels}

    def sequence(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, T, seq_width]`` frame features from ``inputs`` (cached features or ``pixel_values``)."""
        return self.neck(self, inputs)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The task head's video-only output for clips ``pixels`` ``[B, T, 3, H, W]`` (class logits for
        ``classify``, clip embeddings for ``retrieve``, projected frames for ``ground``)."""
        return self.head.video(self.sequence({"pixel_values": pixels}))

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """``[N, D]`` L2-normalised text embeddings: through ``added["text_context"]`` (with gradients) when the
        strategy adapts the text side, else the frozen base tower's, each text encoded once."""
        if self.adapts_text:
            return self.added["text_context"](list(texts))
        todo = [t for t in dict.fromkeys(texts) if t not in self._texts]
        if todo:
            with torch.no_grad():
                self._texts.update(zip(todo, encode_strings(self.base, todo)))
        device = next(self.parameters()).device
        return torch.stack([self._texts[t] for t in texts]).to(device)

    def frames_in_space(self, seq: torch.Tensor) -> torch.Tensor | None:
        """``[B, T, D]`` L2-normalised frame embeddings of a sequence, or None (see ``frame_embed``)."""
        return None if self.frame_embed is None else self.frame_embed(self, seq)

    def inference_modules(self) -> list[nn.Module]:
        """Modules a video prediction runs (for parameter counts): the tower, the additions, the head."""
        return [self.vision, self.added, self.head] if self.backbone_at_inference else [self.added, self.head]

    def merge(self) -> None:
        """Fold injected weights into the base for inference (no-op for strategies without it)."""
        if self.merge_fn is not None:
            self.merge_fn()
            self.merge_fn = None

    def own_state(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers the strategy and the task added or changed: everything under
        ``added`` and ``head``, every trainable base parameter and the buffers of modules owning one."""
        state: dict[str, torch.Tensor] = {}
        for name, module in self.named_modules():
            own = list(module.named_parameters(recurse=False))
            inside = name.split(".")[0] in ("added", "head")
            if not inside and not any(p.requires_grad for _, p in own):
                continue
            for key, t in [*own, *module.named_buffers(recurse=False)]:
                if inside or not isinstance(t, nn.Parameter) or t.requires_grad:
                    state[f"{name}.{key}" if name else key] = t.detach()
        return state


@torch.no_grad()
def encode_strings(model: Any, texts: Sequence[str], batch_size: int = 256) -> list[torch.Tensor]:
    """CPU float embeddings of ``texts`` by ``model``'s text tower (frozen), one tensor per text."""
    from xmodal.engine.cache import to_device
    from xmodal.modalities import MODALITIES

    text, spec = MODALITIES.get("text"), model.spec("text")
    device, out = next(model.parameters()).device, []
    for i in range(0, len(texts), batch_size):
        batch = text.collate([text.load(t, spec) for t in texts[i : i + batch_size]], spec)
        out.extend(model.encode("text", to_device(batch, device)).float().cpu())
    return out


def freeze(model: nn.Module) -> nn.Module:
    """Turn off gradients of every parameter of ``model`` (strategies then unfreeze their own)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model
