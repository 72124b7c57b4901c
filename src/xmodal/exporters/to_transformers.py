"""``transformers``: a folder ``AutoModel.from_pretrained(out)`` loads with no xmodal.

For a transformers CLIP-family base whose strategy trained the towers' own weights: LoRA is merged
into them, bitfit / last-k / full fine-tuning are saved as they are. The task head (and a temporal head)
is not part of a transformers dual encoder: the card says so; ``onnx`` carries it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xmodal.exporters.base import EXPORTERS, added_modules, changes_base, hf_towers, save_transformers
from xmodal.strategies.base import VideoModel


class TransformersExporter:
    description = "a transformers dual encoder folder (AutoModel.from_pretrained), strategy weights merged"

    def problem(self, vm: VideoModel) -> str | None:
        if hf_towers(vm.base) is None:
            return "its base is not a transformers CLIP-family model"
        added = added_modules(vm)
        if added:
            return f"it adds modules ({', '.join(added)}) that a plain transformers class cannot hold"
        if vm.adapts_text:
            return "it adapts the text side with modules a plain transformers class cannot hold"
        if not changes_base(vm):
            return "it trains no weight of the towers (only a head over them): the base model is the transformers model"
        return None

    def export(self, vm: VideoModel, meta: dict[str, Any], out: Path) -> tuple[list[str], str]:
        vm.merge()
        save_transformers(vm.base, out)
        notes = ["format: transformers (the towers with the strategy's weights merged in)",
                 f"not included: the `{vm.task}` task head over the frames (export `--to onnx` for the video model)"]
        load = (f"from transformers import AutoModel, AutoTokenizer\nmodel = AutoModel.from_pretrained({str(out)!r})\n"
                f"tokenizer = AutoTokenizer.from_pretrained({str(out)!r})\n"
                "# model.get_image_features(pixel_values=...), model.get_text_features(**tokenizer(texts, ...))")
        return notes, load


EXPORTERS.register("transformers", TransformersExporter())
