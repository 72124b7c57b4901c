"""``adapter``: bottleneck adapters in every block of the frozen vision trunk.

A residual down-project / GELU / up-project module whose up projection starts at zero, so the adapted
model starts equal to the base. By default it is the video adapter of ST-Adapter (Pan et al.,
"ST-Adapter: Parameter-Efficient Image-to-Video Transfer Learning", NeurIPS 2022): one adapter on
the input of each block (``position="input"``) with a depthwise convolution over frames inside the
bottleneck (``temporal=true``), mixing each token with the same token in neighbouring frames, so the
frozen image blocks see motion from the first layer on. ``temporal=false`` gives a per-frame adapter
(Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML 2019); ``position="sublayers"``
places Houlsby's two per block, on the outputs of the attention and MLP sub-layers before the residual
sums. As in Houlsby et al., the trunk's LayerNorms train too (``norms``). Adapters are injected with
forward hooks: the base model's modules and parameter names are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xmodal.errors import ConfigError
from xmodal.strategies.base import STRATEGIES, VideoModel
from xmodal.tasks.heads import HeadConfig
from xmodal.strategies.hooks import (block_input, first_tensor, replace_first, train_norms, vision_blocks,
                                  with_block_input)
from xmodal.strategies.temporal_head import adapted


@dataclass
class AdapterConfig:
    bottleneck: int = 8  # adapter hidden width
    temporal: bool = True  # ST-Adapter: depthwise temporal convolution across frames in the bottleneck
    position: str = "input"  # "input": on each block's input (ST-Adapter); "sublayers": after attention and
    # after MLP (Houlsby; two per block, so twice the parameters)
    norms: bool = True  # also train the trunk's LayerNorms, as Houlsby et al. do
    kernel: int = 3  # temporal kernel size, frames (odd)
    head: HeadConfig = field(default_factory=HeadConfig)  # temporal head over the frame features


class Adapter(nn.Module):
    """``x + up(mix_t(gelu(down(x))))`` on tokens ``[B*T, N, W]``; ``context["frames"]`` gives T."""

    def __init__(self, width: int, cfg: AdapterConfig, context: dict[str, Any]) -> None:
        super().__init__()
        self.down = nn.Linear(width, cfg.bottleneck)
        self.up = nn.Linear(cfg.bottleneck, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.tconv = (nn.Conv1d(cfg.bottleneck, cfg.bottleneck, cfg.kernel, padding=cfg.kernel // 2, groups=cfg.bottleneck)
                      if cfg.temporal else None)
        self.context = context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.gelu(self.down(x))
        t = int(self.context.get("frames", 1))
        if self.tconv is not None and t > 1 and len(h) % t == 0:
            bt, n, c = h.shape
            seq = h.view(bt // t, t, n, c).permute(0, 2, 3, 1).reshape(-1, c, t)  # [B*N, C, T]
            mixed = self.tconv(seq).view(bt // t, n, c, t).permute(0, 3, 1, 2).reshape(bt, n, c)
            h = h + mixed
        return x + self.up(h)


def _hook(adapter: Adapter):
    def run(module: nn.Module, args: Any, output: Any) -> Any:
        return replace_first(output, adapter(first_tensor(output)))

    return run


def _pre_hook(adapter: Adapter):
    def run(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        x, as_kwarg = block_input(args, kwargs)
        return with_block_input(args, kwargs, adapter(x), as_kwarg)

    return run


class AdapterStrategy:
    config_cls = AdapterConfig
    frozen = False
    default_lr = None  # the engine's rate
    backbone_lr_scale = 1.0  # the norms it unfreezes (``norms``) learn at the adapters' rate
    paper = "ST-Adapter (Pan et al., NeurIPS 2022); per-frame: Houlsby et al., ICML 2019"

    def apply(self, model: Any, cfg: AdapterConfig) -> VideoModel:
        if cfg.position not in ("input", "sublayers"):
            raise ConfigError(f"adapter: position must be 'input' or 'sublayers', got {cfg.position!r}")
        tower = model.tower("image")
        blocks = vision_blocks(tower, "adapter")
        sites = [m for b in blocks for m in tower.sublayers(b)] if cfg.position == "sublayers" else blocks
        width = tower.width
        vm = adapted(model, "adapter", cfg, frozen=False)
        adapters = nn.ModuleList(Adapter(width, cfg, vm.context) for _ in sites)
        vm.added["adapters"] = adapters
        for site, adapter in zip(sites, adapters):
            if cfg.position == "input":
                site.register_forward_pre_hook(_pre_hook(adapter), with_kwargs=True)
            else:
                site.register_forward_hook(_hook(adapter))
        if cfg.norms:
            train_norms(vm.vision)
        return vm


STRATEGIES.register("adapter", AdapterStrategy())
