"""``prompt``: learnable visual prompt tokens (VPT) and learnable text context (CoOp).

VPT (Jia et al., "Visual Prompt Tuning", ECCV 2022): ``tokens`` learnable tokens are appended to the
token sequence of the frozen vision trunk, at the first block (shallow) or replaced at every block
(deep), injected with forward pre-hooks. CoOp (Zhou et al., "Learning to Prompt for Vision-Language
Models", IJCV 2022): every text the task encodes (class names, captions, queries) goes through the
frozen text tower after ``text_context`` learnable context vectors; ``classify`` then maps the clip
into the shared space and scores it against the class names (scaled cosine similarities), and
``text_context=0`` gives a linear classifier instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xmodal.errors import ConfigError
from xmodal.strategies.base import STRATEGIES, VideoModel, freeze
from xmodal.strategies.hooks import block_input, vision_blocks, with_block_input
from xmodal.strategies.temporal_head import adapted
from xmodal.tasks.heads import HeadConfig

PLACEHOLDER = "x"  # a one-token word whose embeddings the learned context replaces


@dataclass
class PromptConfig:
    tokens: int = 4  # VPT: learnable visual tokens per block (0 = none)
    deep: bool = True  # VPT-deep (new tokens at every block) or shallow (first block only)
    text_context: int = 4  # CoOp: learnable context vectors before every text the task encodes (class
    # names, captions, queries); 0 = none (classify then uses a linear classifier)
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
            x = torch.cat([x, self.prompts[index].to(x.dtype).expand(x.shape[0], -1, -1)], 1)
            return with_block_input(args, kwargs, x, as_kwarg)

        return run


class TextContext(nn.Module):
    """CoOp's learned context: ``n_ctx`` vectors replace the word embeddings of placeholder tokens put
    before every text, which then goes through the frozen text tower; ``forward(texts) -> [N, D]``
    L2-normalised embeddings (cached per text while in eval mode)."""

    def __init__(self, model: Any, n_ctx: int) -> None:
        super().__init__()
        table = model.tower("text").token_embedding()
        if table is None:
            raise ConfigError("prompt.text_context needs a text tower that reads word embeddings")
        self.ctx = nn.Parameter(table.weight[:1].detach().clone().repeat(n_ctx, 1) + 0.02 * torch.randn(n_ctx, table.weight.shape[1]))
        self._model = [model]  # not a submodule: the base is owned by the VideoModel
        self._cached: dict[str, torch.Tensor] = {}
        table.register_forward_hook(self._insert)
        self._positions: torch.Tensor | None = None  # where the context goes, while encoding

    def _insert(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        if self._positions is None:
            return output
        out = output.clone()
        rows = torch.arange(len(out))[:, None]
        out[rows, self._positions] = self.ctx.to(out.dtype)
        return out

    def _encode(self, texts: list[str]) -> torch.Tensor:
        from xmodal.modalities import MODALITIES

        model, n = self._model[0], len(self.ctx)
        spec, text = model.spec("text"), MODALITIES.get("text")
        prompts = [" ".join([PLACEHOLDER] * n) + f" {t}" + ("" if t.rstrip().endswith(".") else ".") for t in texts]
        batch = text.collate([text.load(p, spec) for p in prompts], spec)
        batch = {k: v.to(self.ctx.device) for k, v in batch.items()}
        ph = spec.tokenizer.convert_tokens_to_ids(spec.tokenizer.tokenize(PLACEHOLDER))[0]
        self._positions = torch.stack([(ids == ph).nonzero()[:n, 0] for ids in batch["input_ids"]])
        try:
            return model.encode("text", batch)
        finally:
            self._positions = None

    def forward(self, texts: list[str]) -> torch.Tensor:
        if self.training:
            return self._encode(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in self._cached]
        if todo:
            self._cached.update(zip(todo, self._encode(todo).detach()))
        return torch.stack([self._cached[t] for t in texts])

    def train(self, mode: bool = True) -> "TextContext":
        if mode:
            self._cached = {}  # the context will change
        return super().train(mode)


class Prompt:
    config_cls = PromptConfig
    frozen = False
    default_lr = None  # the engine's rate
    backbone_lr_scale = 1.0  # unfreezes no base weight
    paper = "VPT: Jia et al., ECCV 2022; CoOp: Zhou et al., IJCV 2022"

    def apply(self, model: Any, cfg: PromptConfig) -> VideoModel:
        tower = model.tower("image")
        blocks = vision_blocks(tower, "prompt (VPT)")
        width = tower.width
        freeze(model)
        added: dict[str, nn.Module] = {}
        if cfg.text_context > 0:
            added["text_context"] = TextContext(model, cfg.text_context)
        if cfg.tokens > 0:
            vpt = VisualPrompts(len(blocks) if cfg.deep else 1, cfg.tokens, width)
            for i in range(len(vpt.prompts)):
                blocks[i].register_forward_pre_hook(vpt.hook(i), with_kwargs=True)
            added["prompts"] = vpt
        return adapted(model, "prompt", cfg, frozen=False, added=added)


STRATEGIES.register("prompt", Prompt())
