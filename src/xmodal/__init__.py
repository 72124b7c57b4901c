"""xmodal: cross-modal transfer learning on CLIP-family backbones.

Public API (imported lazily so that ``import xmodal`` stays cheap)::

    model = xmodal.load("lit")                      # or a checkpoint folder, or a CLIP/SigLIP name
    result = xmodal.align(model, rows, xmodal.AlignConfig(), val_rows=..., root=...)
    zs = xmodal.zeroshot(model, paths, labels, classnames)
    root = xmodal.generate_world("world")
    xmodal.export("runs/lora/model", to="peft", out="lora-peft")  # or "transformers", "onnx"
    xmodal.list_strategies("*probe*")             # registered names: list_models, list_encoders, ...

Importing the package sets glibc's malloc thresholds for tensor-sized buffers (``xmodal/allocator.py``;
``XMODAL_MALLOC=system`` keeps glibc's defaults).
"""

from __future__ import annotations

import importlib
from typing import Any

from xmodal.allocator import tune_allocator

tune_allocator()

__version__ = "0.1.0"

_EXPORTS = {
    "load": "xmodal.api",
    "count_parameters": "xmodal.api",
    "XModel": "xmodal.backbones.base",
    "BACKBONES": "xmodal.backbones.base",
    "MODALITIES": "xmodal.modalities",
    "align": "xmodal.alignment.train",
    "AlignConfig": "xmodal.alignment.train",
    "FitConfig": "xmodal.engine.fit",
    "zeroshot": "xmodal.tasks.zeroshot",
    "build_zero_shot_classifier": "xmodal.tasks.zeroshot",
    "embed": "xmodal.tasks.embed",
    "LiTConfig": "xmodal.backbones.lit",
    "VisionConfig": "xmodal.encoders.vision",
    "HFClipConfig": "xmodal.backbones.hf_clip",
    "WorldConfig": "xmodal.experiments.world",
    "generate_world": "xmodal.experiments.world",
    "read_manifest": "xmodal.data.manifest",
    "read_folder": "xmodal.data.manifest",
    "run_demo": "xmodal.experiments.demo",
    "DemoConfig": "xmodal.experiments.demo",
    "bind": "xmodal.binding.train",
    "BindConfig": "xmodal.binding.train",
    "ENCODERS": "xmodal.encoders",
    "FUSIONS": "xmodal.fusion",
    "fuse": "xmodal.fusion.train",
    "FuseConfig": "xmodal.fusion.train",
    "evaluate_fusion": "xmodal.fusion.evaluate",
    "load_fusion": "xmodal.fusion.model",
    "Index": "xmodal.index",
    "transfer": "xmodal.strategies.train",
    "TransferConfig": "xmodal.strategies.train",
    "compare": "xmodal.experiments.compare",
    "CompareConfig": "xmodal.experiments.compare",
    "STRATEGIES": "xmodal.strategies",
    "load_transfer": "xmodal.strategies",
    "export": "xmodal.exporters",
    "list_models": "xmodal.catalog",
    "list_strategies": "xmodal.catalog",
    "list_tasks": "xmodal.catalog",
    "TASKS": "xmodal.tasks",
    "list_encoders": "xmodal.catalog",
    "list_fusions": "xmodal.catalog",
    "list_losses": "xmodal.catalog",
    "list_modalities": "xmodal.catalog",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'xmodal' has no attribute {name!r}")
    importlib.import_module("xmodal.backbones")  # registers the built-in backbones
    if name == "load":
        importlib.import_module("xmodal.strategies")  # registers transfer folders (RUN/model) with ``load``
    return getattr(importlib.import_module(_EXPORTS[name]), name)
