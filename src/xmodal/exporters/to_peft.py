"""``peft``: LoRA on a transformers base as a PEFT adapter (``adapter_config.json`` +
``adapter_model.safetensors``), loadable with ``PeftModel.from_pretrained(base, out)``.

The base it applies to is written next to it as a transformers folder (``out/base``), with the
unmerged base weights; ``adapter_config.json`` points there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from xmodal.backbones.hf_clip import LAYOUTS
from xmodal.exporters.base import EXPORTERS, hf_towers, save_transformers
from xmodal.strategies.base import VideoModel

ADAPTER = "default"  # the adapter name xmodal's LoRA injection uses


def lora_layers(vm: VideoModel) -> dict[str, nn.Module]:
    """PEFT LoRA layers inside the image trunk, by name under it."""
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in vm.vision.trunk_module.named_modules() if isinstance(m, LoraLayer)}


class PeftExporter:
    description = "a PEFT LoRA adapter (PeftModel.from_pretrained) + its transformers base in base/"

    def problem(self, vm: VideoModel) -> str | None:
        if hf_towers(vm.base) is None:
            return "its base is not a transformers CLIP-family model"
        if not lora_layers(vm):
            return "it has no LoRA layers (a PEFT folder holds a LoRA adapter)"
        return None

    def export(self, vm: VideoModel, meta: dict[str, Any], out: Path) -> tuple[list[str], str]:
        from peft import LoraConfig
        from safetensors.torch import save_file

        layers = lora_layers(vm)
        prefix = LAYOUTS[vm.vision.hf_config.model_type].vision + "."
        first = next(iter(layers.values()))
        dropout = first.lora_dropout[ADAPTER]
        config = LoraConfig(r=first.r[ADAPTER], lora_alpha=first.lora_alpha[ADAPTER],
                            lora_dropout=dropout.p if isinstance(dropout, nn.Dropout) else 0.0,
                            target_modules=sorted(prefix + name for name in layers),
                            base_model_name_or_path=str((out / "base").resolve()))
        state = {f"base_model.model.{prefix}{k.replace(f'.{ADAPTER}.', '.')}": v.detach().contiguous().clone()
                 for k, v in vm.vision.trunk_module.state_dict().items() if "lora_" in k}
        config.save_pretrained(str(out))
        save_file(state, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
        save_transformers(vm.base, out / "base")
        notes = ["format: PEFT LoRA adapter on the image tower; the base it applies to is in `base/`",
                 f"not included: the `{vm.task}` task head over the frames (export `--to onnx` for the video model)"]
        load = (f"from transformers import AutoModel\nfrom peft import PeftModel\n"
                f"base = AutoModel.from_pretrained({str(out / 'base')!r})\n"
                f"model = PeftModel.from_pretrained(base, {str(out)!r})")
        return notes, load


EXPORTERS.register("peft", PeftExporter())
