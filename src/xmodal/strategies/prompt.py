"""``prompt``: learnable visual prompt tokens (VPT) and learnable text context (CoOp).

VPT (Jia et al., "Visual Prompt Tuning", ECCV 2022): ``tokens`` learnable tokens are appended to the
token sequence of the frozen vision trunk, at the first block (shallow) or replaced at every block
(deep), injected with forward pre-hooks. CoOp (Zhou et al., "Learning to Prompt for Vision-Language
Models", IJCV 2022): the class embeddings come from the frozen text tower reading ``text_context``
learnable context vectors followed by the class name; the temporal head maps the clip into the
shared space and logits are scaled cosine similarities. ``text_context=0`` uses a linear classifier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.strategies.base import STRATEGIES, VideoClassifier, freeze
from xmodal.strategies.heads import HeadConfig, TemporalHead
from xmodal.strategies.hooks import block_input, text_token_embedding, vision_blocks, with_block_input

PLACEHOLDER = "x"  # a one-token word whose embeddings the learned context replaces


@dataclass
class PromptConfig:
    tokens: int = 4  # VPT: learnable visual tokens per block (0 = none)
    deep: bool = True  # VPT-deep (new tokens at every block) or shallow (first block only)
    text_context: int = 4  # CoOp: learnable context vectors before the class name (0 = linear classifier)
    head: HeadConfig = field(default_factory=HeadConfig)  # temporal head over the frame features


class VisualPrompts(nn.Module):
    """One ``[tokens, width]`` parameter per block that gets prompts."""

    def __init__(self, blocks: int, tokens: int, width: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.prompts = nn.ParameterList(nn.Parameter(torch.randn(tokens, width) * 0.02) for _ in range(blocks))

    def hook(self, index: int):
        def run(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            x, as_kwarg = block_input(args, kwargs)
            if index > 0:
                x = x[:, : -self.tokens]  # drop the previous block's prompts (deep VPT)
            x = torch.cat([x, self.prompts[index].to(x.dtype).expand(len(x), -1, -1)], 1)
            return with_block_input(args, kwargs, x, as_kwarg)

        return run


class CoOpClassifier(nn.Module):
    """Class embeddings from learned context + class name through the frozen text tower."""

    def __init__(self, model: Any, classes: Sequence[str], n_ctx: int, embed_dim: int) -> None:
        super().__init__()
        table = text_token_embedding(model.tower("text"))
        self.ctx = nn.Parameter(table.weight[:1].detach().clone().repeat(n_ctx, 1) + 0.02 * torch.randn(n_ctx, table.weight.shape[1]))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self._model = [model]  # not a submodule: the base is owned by the VideoClassifier
        self.classes = list(classes)
        self._cached: torch.Tensor | None = None
        table.register_forward_hook(self._insert)
        self._active = False
        self._positions: torch.Tensor | None = None

    def _insert(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        if not self._active or self._positions is None:
            return output
        out = output.clone()
        rows = torch.arange(len(out))[:, None]
        out[rows, self._positions] = self.ctx.to(out.dtype)
        return out

    def class_embeddings(self) -> torch.Tensor:
        """``[C, D]`` L2-normalised class embeddings (cached while in eval mode)."""
        if self._cached is not None and not self.training:
            return self._cached
        from xmodal.modalities import MODALITIES

        model, n = self._model[0], len(self.ctx)
        spec, text = model.spec("text"), MODALITIES.get("text")
        prompts = [" ".join([PLACEHOLDER] * n) + f" {c}." for c in self.classes]
        batch = text.collate([text.load(p, spec) for p in prompts], spec)
        batch = {k: v.to(self.ctx.device) for k, v in batch.items()}
        ph = spec.tokenizer.convert_tokens_to_ids(spec.tokenizer.tokenize(PLACEHOLDER))[0]
        self._positions = torch.stack([(ids == ph).nonzero()[:n, 0] for ids in batch["input_ids"]])
        self._active = True
        try:
            emb = model.encode("text", batch)
        finally:
            self._active = False
        self._cached = None if self.training else emb.detach()
        return emb

    def train(self, mode: bool = True) -> "CoOpClassifier":
        if mode:
            self._cached = None  # the context will change
        return super().train(mode)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        video = nn.functional.normalize(video, dim=-1)
        return self.logit_scale.exp() * video @ self.class_embeddings().t()


class PromptHead(nn.Module):
    """Temporal head into the shared space, scored against CoOp class embeddings."""

    def __init__(self, head: TemporalHead, coop: CoOpClassifier) -> None:
        super().__init__()
        self.head, self.coop = head, coop

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.coop(self.head(frames))


class Prompt:
    config_cls = PromptConfig
    frozen = False
    default_lr = None  # the engine's rate
    backbone_lr_scale = 1.0  # unfreezes no base weight
    paper = "VPT: Jia et al., ECCV 2022; CoOp: Zhou et al., IJCV 2022"

    def apply(self, model: Any, classes: Sequence[str], cfg: PromptConfig) -> VideoClassifier:
        tower = model.tower("image")
        blocks = vision_blocks(tower, "prompt (VPT)")
        width = tower.width
        freeze(model)
        added: dict[str, nn.Module] = {}
        if cfg.text_context > 0:
            added["head"] = PromptHead(TemporalHead(width, model.embed_dim, cfg.head),
                                       CoOpClassifier(model, classes, cfg.text_context, model.embed_dim))
        else:
            added["head"] = TemporalHead(width, len(classes), cfg.head)
        if cfg.tokens > 0:
            vpt = VisualPrompts(len(blocks) if cfg.deep else 1, cfg.tokens, width)
            for i in range(len(vpt.prompts)):
                blocks[i].register_forward_pre_hook(vpt.hook(i), with_kwargs=True)
            added["prompts"] = vpt
        return VideoClassifier(model, classes, "prompt", cfg, added, frozen=False)


STRATEGIES.register("prompt", Prompt())
