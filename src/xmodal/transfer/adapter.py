"""``adapter``: bottleneck adapters after every block of the frozen vision trunk.

A residual down-project / GELU / up-project module on each block's output (Houlsby et al.,
"Parameter-Efficient Transfer Learning for NLP", ICML 2019; AIM: Yang et al., ICLR 2023). The
``temporal`` variant adds a depthwise convolution over frames inside the bottleneck, mixing each
token with the same token in neighbouring frames (ST-Adapter: Pan et al., NeurIPS 2022). Adapters
are injected with forward hooks (the base model's modules and parameter names are unchanged); the up
projection starts at zero, so the adapted model starts equal to the base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.transfer.base import STRATEGIES, VideoClassifier
from xmodal.transfer.heads import HeadConfig
from xmodal.transfer.hooks import first_tensor, replace_first, vision_blocks, vision_width
from xmodal.transfer.temporal_head import head_classifier


@dataclass
class AdapterConfig:
    bottleneck: int = 8  # adapter hidden width
    temporal: bool = False  # ST-Adapter: depthwise temporal convolution across frames in the bottleneck
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


class AdapterStrategy:
    config_cls = AdapterConfig
    frozen = False
    paper = "Houlsby et al., ICML 2019; temporal: ST-Adapter (Pan et al., NeurIPS 2022) / AIM (Yang et al., ICLR 2023)"

    def apply(self, model: Any, classes: Sequence[str], cfg: AdapterConfig) -> VideoClassifier:
        blocks = vision_blocks(model.tower("image"), "adapter")
        width = vision_width(model.tower("image"))
        clf = head_classifier(model, classes, "adapter", cfg, frozen=False)
        adapters = nn.ModuleList(Adapter(width, cfg, clf.context) for _ in blocks)
        clf.added["adapters"] = adapters
        for block, adapter in zip(blocks, adapters):
            block.register_forward_hook(_hook(adapter))
        return clf


STRATEGIES.register("adapter", AdapterStrategy())
