"""Small trainable vision towers for LiT models: a ConvNet and a ViT.

Both expose ``forward_features(pixel_values) -> list[Tensor[B, N, width]]`` (tokens after each stage /
block) and ``forward(pixel_values) -> Tensor[B, width]`` (pooled), so probes, side networks and
adapters work the same on either, and declare their insides for the strategies that reach there:
``transformer_blocks()`` (none for the ConvNet), ``sublayers(block)`` and ``final_parts()`` (the net
contract of ``encoders/base.py``). The ViT uses separate q/k/v ``nn.Linear`` layers so that PEFT's LoRA
can target them by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xmodal.config import check_ranges
from xmodal.errors import ConfigError


@dataclass
class VisionConfig:
    """A small trainable vision trunk: a ResNet-style ConvNet or a ViT."""

    arch: str = "convnet"  # "convnet" (fast on CPU) or "vit" (token-based; prompts/adapters)
    image_size: int = 64  # input side, pixels
    width: int = 64  # channels (convnet, doubled per stage up to 4x) or token width (vit)
    depth: int = 4  # stages (convnet) or transformer blocks (vit)
    patch_size: int = 8  # vit patch side, pixels
    stem_stride: int = 2  # convnet stem downsampling (2 = 4x cheaper than full resolution)
    heads: int = 4  # vit attention heads
    stem: str = "patch"  # vit token stem: "patch" (one linear patchify conv) or "conv" (stride-2 3x3 conv-BN-GELU
    # layers down to the patch grid, then a 1x1 projection: Xiao et al., 2021, "Early convolutions help
    # transformers see better"; needs a power-of-two patch_size): small shapes survive, same token count
    mlp_ratio: float = 2.0  # vit MLP hidden = mlp_ratio * width
    dropout: float = 0.0  # dropout on the pooled features

    def __post_init__(self) -> None:
        check_ranges(self, VISION_BOUNDS)
        if self.arch == "vit" and self.width % self.heads:
            raise ConfigError(f"VisionConfig.width={self.width} is not a multiple of heads={self.heads}")
        if self.arch == "vit" and self.patch_size > self.image_size:
            raise ConfigError(f"VisionConfig.patch_size={self.patch_size} is larger than image_size={self.image_size}")


VISION_BOUNDS = {  # plausible ranges of the VisionConfig sizes (a 10**7 width would try to allocate petabytes)
    "image_size": (1, 4096), "width": (1, 8192), "depth": (1, 256), "patch_size": (1, 4096), "stem_stride": (1, 64),
    "heads": (1, 256), "mlp_ratio": (0.01, 64), "dropout": (0.0, 0.99),
}


class Blockless:
    """Net contract members of a trunk without transformer blocks (a CNN)."""

    def transformer_blocks(self) -> list[nn.Module]:
        return []

    def final_parts(self) -> list[nn.Module]:
        return []

    def sublayers(self, block: nn.Module) -> tuple[nn.Module, nn.Module]:
        raise ConfigError(f"{type(self).__name__} has no transformer blocks, so no attention / MLP sublayers")


class ConvStage(nn.Module):
    """conv3x3-BN-GELU x2 with a residual 1x1 shortcut, then 2x downsampling (except first)."""

    def __init__(self, cin: int, cout: int, downsample: bool) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.GELU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class ConvNet(Blockless, nn.Module):
    """A ResNet-style ConvNet; output width = ``width * 2**min(depth-1, 2)``."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        widths = [cfg.width * 2 ** min(i, 2) for i in range(cfg.depth)]
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, cfg.stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.GELU())
        cins = [widths[0]] + widths[:-1]
        self.blocks = nn.ModuleList(ConvStage(a, b, i > 0) for i, (a, b) in enumerate(zip(cins, widths)))
        self.out_dim = widths[-1]

    def forward_features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(pixel_values)
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x.flatten(2).transpose(1, 2))  # [B, H*W, C]
        return feats

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.forward_features(pixel_values)[-1].mean(1)


class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out linears (LoRA-targetable)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(width, width) for _ in range(3))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        split = lambda t: t.view(b, n, self.heads, w // self.heads).transpose(1, 2)  # noqa: E731
        out = nn.functional.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, n, w))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClassTokenTransformer(nn.Module):
    """Pre-norm :class:`Block` s over tokens that start with a class token; pooled features are the final
    norm of the class token. Subclasses set ``blocks`` (Blocks), ``norm`` and ``embed(x) -> tokens``."""

    blocks: nn.ModuleList
    norm: nn.LayerNorm

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Tokens ``[B, N, width]`` after each block."""
        tokens = self.embed(x)
        feats = []
        for block in self.blocks:
            tokens = block(tokens)
            feats.append(tokens)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.forward_features(x)[-1][:, 0])

    def transformer_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def final_parts(self) -> list[nn.Module]:
        return [self.norm]

    def sublayers(self, block: nn.Module) -> tuple[nn.Module, nn.Module]:
        return block.attn, block.mlp


class ViT(ClassTokenTransformer):
    """A small Vision Transformer (Dosovitskiy et al., 2021) with a class token."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        n = (cfg.image_size // cfg.patch_size) ** 2
        if cfg.stem not in ("patch", "conv"):
            raise ConfigError(f"vision.stem {cfg.stem!r} is not one of 'patch', 'conv'")
        self.patch = conv_stem(cfg) if cfg.stem == "conv" else nn.Conv2d(3, cfg.width, cfg.patch_size, cfg.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos = nn.Parameter(torch.randn(1, n + 1, cfg.width) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.out_dim = cfg.width

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1)
        return x + self.pos


def conv_stem(cfg: VisionConfig) -> nn.Sequential:
    """log2(patch_size) stride-2 3x3 conv-BN-GELU layers (channels doubling up to ``width``), then a 1x1
    conv to ``width``: the patch grid of a patchify stem, reached gradually."""
    n = cfg.patch_size.bit_length() - 1
    if cfg.patch_size < 2 or 2 ** n != cfg.patch_size:
        raise ConfigError(f"vision.stem 'conv' needs a power-of-two patch_size >= 2, got {cfg.patch_size}")
    widths = [max(8, cfg.width >> (n - 1 - i)) for i in range(n)]
    layers: list[nn.Module] = []
    for cin, cout in zip([3, *widths[:-1]], widths):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]
    return nn.Sequential(*layers, nn.Conv2d(widths[-1], cfg.width, 1))


def build_vision(cfg: VisionConfig) -> nn.Module:
    """The vision trunk named by ``cfg.arch``."""
    archs = {"convnet": ConvNet, "vit": ViT}
    if cfg.arch not in archs:
        raise ConfigError(f"vision.arch {cfg.arch!r} is not one of {sorted(archs)}")
    return archs[cfg.arch](cfg)
