"""``lora``: low-rank updates of the vision trunk's attention / MLP linears, through PEFT.

LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022): ``W + (alpha/r) B A``
with ``B`` starting at zero. PEFT's ``inject_adapter_in_model`` puts the LoRA layers into the image
tower's trunk only (the text tower may use the same module names); ``merge`` folds ``B A`` into ``W``
and restores plain ``nn.Linear`` modules, so inference costs nothing extra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from xmodal.errors import ConfigError
from xmodal.strategies.base import STRATEGIES, VideoModel
from xmodal.tasks.heads import HeadConfig
from xmodal.strategies.hooks import vision_blocks
from xmodal.strategies.temporal_head import adapted


@dataclass
class LoRAConfig:
    rank: int = 4  # r, the rank of the update
    alpha: float = 8.0  # scaling numerator: the update is (alpha / rank) * B A
    dropout: float = 0.0  # dropout on the LoRA branch input
    targets: tuple[str, ...] = ("q_proj", "v_proj")  # module-name suffixes: q/k/v/out_proj; LiT MLP "mlp.0"/"mlp.2", CLIP "fc1"/"fc2"
    head: HeadConfig = field(default_factory=HeadConfig)  # temporal head over the frame features


def merge_lora(root: nn.Module) -> None:
    """Merge every PEFT LoRA layer under ``root`` into its base layer and put the base layer back."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(root.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = root.get_submodule(parent_name) if parent_name else root
            setattr(parent, child, module.get_base_layer())


class LoRA:
    config_cls = LoRAConfig
    frozen = False
    default_lr = 1e-2  # LoRA wants a higher rate than a head or full tuning: B starts at zero and the update
    # is low-rank (Hu et al. tune it per task); measured on the world's motion classes, 1e-2 beats 3e-3 on val
    backbone_lr_scale = 1.0  # its LoRA layers sit inside the base (``base.`` names): they learn at default_lr
    paper = "Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022 (via PEFT)"

    def apply(self, model: Any, cfg: LoRAConfig) -> VideoModel:
        from peft import LoraConfig, inject_adapter_in_model

        vision_blocks(model.tower("image"), "lora")
        vm = adapted(model, "lora", cfg, frozen=False)
        trunk = vm.vision.trunk_module
        names = [n for n, m in trunk.named_modules() if isinstance(m, nn.Linear)]
        hits = [n for n in names if any(n == t or n.endswith("." + t) for t in cfg.targets)]
        if not hits:
            raise ConfigError(f"lora.targets {list(cfg.targets)} match no linear layer of the vision trunk; "
                              f"some names there: {sorted({n.rsplit('.', 1)[-1] for n in names})[:12]}")
        peft_cfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=hits)
        inject_adapter_in_model(peft_cfg, trunk)
        for n, p in trunk.named_parameters():
            p.requires_grad_("lora_" in n)
        vm.merge_fn = lambda: merge_lora(trunk)
        return vm


STRATEGIES.register("lora", LoRA())
