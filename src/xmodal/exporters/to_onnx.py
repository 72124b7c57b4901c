"""``onnx``: the towers of a transferred model as ONNX graphs with a dynamic batch axis.

``video.onnx`` is the whole transferred video model (``pixel_values [B, T, 3, H, W]`` -> the task head's
video output: class logits, clip embeddings, ...), with whatever the strategy added; ``image.onnx`` is
its image tower as the strategy leaves it (an image = a one-frame clip) and ``text.onnx`` the text
tower (left out when the strategy adapts the text side with modules on strings). Exported with
``torch.onnx.export`` and checked against PyTorch with onnxruntime at export time (to 1e-4).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xmodal.errors import ExportError
from xmodal.exporters.base import EXPORTERS
from xmodal.modalities import MODALITIES
from xmodal.strategies.base import VideoModel

TOLERANCE = 1e-4  # largest absolute difference allowed between onnxruntime and PyTorch outputs


class _Image(nn.Module):
    def __init__(self, vm: VideoModel) -> None:
        super().__init__()
        self.vm = vm

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vm.per_frame(self.vm.vision, pixel_values[:, None])[:, 0]


class _Text(nn.Module):
    def __init__(self, tower: nn.Module, keys: list[str]) -> None:
        super().__init__()
        self.tower, self.keys = tower, keys

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.tower(dict(zip(self.keys, tensors)))


class _Video(nn.Module):
    def __init__(self, vm: VideoModel) -> None:
        super().__init__()
        self.vm = vm

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vm(pixel_values)


def graphs(vm: VideoModel) -> dict[str, tuple[nn.Module, dict[str, torch.Tensor], dict[str, dict[int, str]]]]:
    """name -> (module, example inputs, dynamic axes) of each graph to export."""
    spec = vm.base.spec("image")
    frames = vm.base.spec("video").num_frames
    image = torch.rand(2, 3, spec.size, spec.size)
    out = {"video": (_Video(vm), {"pixel_values": torch.rand(2, frames, 3, spec.size, spec.size)}, {"pixel_values": {0: "batch"}}),
           "image": (_Image(vm), {"pixel_values": image}, {"pixel_values": {0: "batch"}})}
    if not vm.adapts_text:
        text, tspec = MODALITIES.get("text"), vm.base.spec("text")
        batch = text.collate([text.load(t, tspec) for t in ("a photo of a cat", "a dog")], tspec)
        inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        out["text"] = (_Text(vm.base.tower("text"), list(inputs)), inputs, {k: {0: "batch", 1: "tokens"} for k in inputs})
    return out


def export_graph(module: nn.Module, inputs: dict[str, torch.Tensor], axes: dict[str, dict[int, str]], file: Path) -> float:
    """Export ``module`` to ``file`` and return the largest difference of onnxruntime's output from PyTorch's,
    on a batch one larger than the traced one (a batch size fixed in the graph fails there)."""
    import onnxruntime

    module.eval()
    check = {k: torch.cat([v, v[:1]]) for k, v in inputs.items()}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # its fused transformer-layer kernel has no ONNX operator
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module(*inputs.values())  # fills eval-mode caches (CoOp's class-text embeddings): constants in the graph
            torch.onnx.export(module, tuple(inputs.values()), str(file), input_names=list(inputs), output_names=["output"],
                              dynamic_axes={**axes, "output": {0: "batch"}}, dynamo=False, opset_version=17)
            expected = module(*check.values())
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    try:
        got = session.run(None, {k: v.numpy() for k, v in check.items()})[0]
    except Exception as exc:  # onnxruntime raises its own error types
        raise ExportError(f"{file}: onnxruntime cannot run it on another batch size ({str(exc).splitlines()[0][:200]})") from None
    return float(np.abs(got - expected.float().numpy()).max())


class OnnxExporter:
    description = "ONNX graphs of the video model, its image tower and its text tower (onnxruntime)"

    def problem(self, vm: VideoModel) -> str | None:
        return None

    def export(self, vm: VideoModel, meta: dict[str, Any], out: Path) -> tuple[list[str], str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ExportError("--to onnx needs onnx and onnxruntime: pip install 'xmodal[onnx]'") from None
        vm.merge()
        inputs = {}
        for name, (module, example, axes) in graphs(vm).items():
            diff = export_graph(module, example, axes, out / f"{name}.onnx")
            if not diff <= TOLERANCE:
                raise ExportError(f"{out / name}.onnx: onnxruntime differs from PyTorch by {diff:.2g} (> {TOLERANCE})")
            inputs[name] = {k: list(v.shape) for k, v in example.items()}
        (out / "onnx.json").write_text(json.dumps({"inputs": inputs, "output": "output", "tolerance": TOLERANCE}, indent=2))
        notes = [f"format: ONNX ({', '.join(f'{n}.onnx' for n in inputs)}), batch axis dynamic; example input shapes "
                 "in `onnx.json`", f"`video.onnx` outputs what the `{vm.task}` head outputs for a clip"]
        load = (f"import onnxruntime\nvideo = onnxruntime.InferenceSession({str(out / 'video.onnx')!r})\n"
                "out = video.run(None, {'pixel_values': clips})[0]  # clips: float32 [B, T, 3, H, W], normalised")
        return notes, load


EXPORTERS.register("onnx", OnnxExporter())
