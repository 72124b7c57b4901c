"""The ``onnx`` embedding backend: a model's towers run by onnxruntime, for index, search and ``embed``.

:class:`OnnxEmbedder` wraps any embedding model (an XModel, a transfer folder's ``TransferredModel``) and
exports what ``encode(modality, batch)`` computes for each of its image, video and text modalities to ONNX
(``torch.onnx.export``, dynamic batch, written to a folder), checks each graph against PyTorch with
onnxruntime on another batch size (to 1e-4, as ``xmodal export --to onnx`` does), and from then on runs
those graphs in onnxruntime. Preprocessing (``spec``) is the wrapped model's, so the vectors are the same
to 1e-4. A modality whose computation is not a graph of tensors (a CoOp text side reads strings; a tower
that fails to export) stays in PyTorch: ``backends`` says which runs where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from xmodal.errors import ConfigError, ExportError
from xmodal.exporters.to_onnx import TOLERANCE, export_graph
from xmodal.modalities import MODALITIES

BACKENDS = ("torch", "onnx")  # values of the ``backend`` settings that pick how a model runs


class _Encode(nn.Module):
    """``model.encode(modality, ...)`` over positional tensors (what ``torch.onnx.export`` traces)."""

    def __init__(self, model: Any, modality: str, keys: list[str]) -> None:
        super().__init__()
        self.model, self.modality, self.keys = model, modality, keys  # a submodule: its weights are the graph's

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model.encode(self.modality, dict(zip(self.keys, tensors)))


def _pixels(spec: Any) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.rand(2, 3, spec.size, spec.size)}


def _clips(spec: Any) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.rand(2, spec.num_frames, 3, spec.image.size, spec.image.size)}


def _texts(spec: Any) -> dict[str, torch.Tensor]:
    text = MODALITIES.get("text")
    return text.collate([text.load(t, spec) for t in ("a red circle moving left", "a photo")], spec)


EXAMPLES: dict[str, Callable[[Any], dict[str, torch.Tensor]]] = {"image": _pixels, "video": _clips, "text": _texts}
# modality -> example batch from its spec; the axes that may vary: the batch, and a text's tokens
VARYING: dict[str, dict[int, str]] = {"image": {0: "batch"}, "video": {0: "batch"}, "text": {0: "batch", 1: "tokens"}}


class OnnxEmbedder(nn.Module):
    """An embedding model whose image, video and text encoders run in onnxruntime (see the module docstring)."""

    def __init__(self, model: Any, folder: str | Path, threads: int = 0) -> None:
        super().__init__()
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError("the onnx backend needs onnx and onnxruntime: pip install 'xmodal[onnx]'") from None
        self.model = model.eval()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.sessions: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}  # modality -> why it stays in PyTorch
        for modality in [m for m in model.modalities if m in EXAMPLES]:
            file = self.folder / f"{modality}.onnx"
            try:
                self._export(modality, file)
            except ExportError as exc:
                self.skipped[modality] = str(exc)
                continue
            self.sessions[modality] = onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])

    def _export(self, modality: str, file: Path) -> None:
        example = EXAMPLES[modality](self.model.spec(modality))
        example = {k: v for k, v in example.items() if isinstance(v, torch.Tensor)}
        axes = {k: VARYING[modality] for k in example}
        try:
            diff = export_graph(_Encode(self.model, modality, list(example)), example, axes, file)
        except (RuntimeError, TypeError, ValueError) as exc:  # torch.onnx cannot trace it
            raise ExportError(f"{modality}: not exportable ({str(exc).splitlines()[0][:160]})") from None
        if not diff <= TOLERANCE:
            raise ExportError(f"{modality}: the traced graph differs from PyTorch by {diff:.2g} (it reads more than tensors)")

    @property
    def modalities(self) -> list[str]:
        return self.model.modalities

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    @property
    def backends(self) -> dict[str, str]:
        """modality -> ``onnx`` or ``torch``: where its encoder runs."""
        return {m: "onnx" if m in self.sessions else "torch" for m in self.modalities}

    def spec(self, modality: str) -> Any:
        return self.model.spec(modality)

    def encode(self, modality: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, D]`` embeddings: onnxruntime where the modality was exported, else the wrapped model."""
        if modality not in self.sessions:
            return self.model.encode(modality, batch)
        session = self.sessions[modality]
        feed = {i.name: batch[i.name].cpu().numpy() for i in session.get_inputs()}
        return torch.from_numpy(session.run(None, feed)[0])

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        return self.model.parameters(recurse)


def with_backend(model: Any, backend: str, folder: str | Path) -> Any:
    """``model`` as it runs on ``backend``: itself for ``torch``, an :class:`OnnxEmbedder` (graphs in ``folder``)
    for ``onnx``."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    return model if backend == "torch" else OnnxEmbedder(model, folder)
