"""The import layers of the package, bottom first: the one place they are listed.

A package may import packages of its own layer or of the layers below it, never one above it, and
no two packages (nor two modules) may import each other, directly or through others.
``tests/test_layers.py`` checks this on every import statement of ``src/xmodal`` (function-level
imports included), and ``docs/architecture.md`` draws it.
"""

from __future__ import annotations

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "registry", "config", "layers", "allocator"),  # errors a user acts on, registries, config
    # dataclasses, glibc malloc settings
    ("engine", "eval"),  # the one fit loop, checkpoints, feature cache, losses · metrics, efficiency, plots, reports
    ("modalities",),  # decode + sample + preprocess: image, video, audio, text, series
    ("data",),  # manifests, folders of class folders, the media Dataset
    ("encoders",),  # encoders for new modalities and the small vision trunks
    ("backbones",),  # towers in one shared space: lit, hf_clip, bound
    ("api", "tasks"),  # load · the video tasks (head, loss, metrics), embedding, zero-shot
    ("alignment", "binding", "fusion", "strategies"),  # contrastive alignment, binding, fusion, transfer strategies
    ("catalog", "exporters"),  # what is registered (list_*, ``xmodal list``) · exporters: transformers, PEFT, ONNX
    ("index", "serve"),  # vector index + metadata, search page
    ("experiments",),  # the built-in world, the demo, the compare harness (never imported by the library)
    ("cli",),  # thin subcommands
)


def layer_of(package: str) -> int:
    """The layer index of a top-level package or module of ``xmodal`` (a KeyError if unlisted)."""
    for i, names in enumerate(LAYERS):
        if package in names:
            return i
    raise KeyError(f"xmodal.{package} is in no layer of xmodal.layers.LAYERS")
