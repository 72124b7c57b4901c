"""Frozen-strategy features of a transfer run in the on-disk store (``engine/store.py``), reused
across runs: a second run on the same files, model and preprocessing encodes nothing.

Where: ``TransferConfig.feature_store``: "auto" = ``$XMODAL_FEATURE_STORE``, else
``~/.cache/xmodal/features``; a folder; or "" to keep features in memory for the run only.
Inside it, one store folder per *namespace*, a digest of what computes the features:

- the base model's weights (every parameter and buffer, by name, dtype, shape and bytes; a frozen
  strategy's cache is a function of the base model only, never of what it trains), so a model saved
  and loaded again, or rebuilt from the same seed, finds its features, and a changed weight does not;
- the strategy's name and options (side_network's layers change what it reads);
- the frame sampling and preprocessing (``VideoSpec``: frames, size, mean, std, ...): one folder holds
  rows of one shape (a task that samples 16 frames writes beside one that samples 8, not among them).

A row's key is the digest of the clip file's *content* (BLAKE2b of its bytes: a renamed, copied or
touched file is found again, an edited one is not; content rather than size + mtime because a wrong
hit would silently train on another clip's features, and hashing reads a file much faster than
decoding it) and of the frame sampling and preprocessing (``VideoSpec``: frames, size, mean, std, ...).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from xmodal.data.manifest import resolve_path
from xmodal.engine.store import FeatureStore, StoredRows, digest, file_digest, fill
from xmodal.strategies.base import VideoModel
from xmodal.strategies.data import ClipSet

DEFAULT_FOLDER = "~/.cache/xmodal/features"  # the "auto" store when $XMODAL_FEATURE_STORE is unset
ENV = "XMODAL_FEATURE_STORE"


def store_folder(setting: str) -> Path | None:
    """The store root a ``feature_store`` setting names; None for "" (features in memory)."""
    if not setting:
        return None
    if setting == "auto":
        setting = os.environ.get(ENV) or DEFAULT_FOLDER
    return Path(setting).expanduser()


def weights_digest(module: torch.nn.Module) -> str:
    """Hex digest of every parameter and buffer of ``module`` (name, dtype, shape and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def namespace(vm: VideoModel, spec: Any) -> str:
    """The store folder name of ``vm``'s frozen features of clips preprocessed by ``spec`` (see the module doc)."""
    return digest(weights_digest(vm.base), vm.strategy, repr(vm.config), repr(spec)).hex()


def clip_keys(clips: ClipSet) -> list[bytes]:
    """The store key of each distinct clip of ``clips``: its file's content and the preprocessing."""
    spec = repr(clips.spec)
    return [digest(file_digest(resolve_path(clips.root, p)), spec) for p in clips.paths]


def stored_inputs(vm: VideoModel, clips: ClipSet, batch_size: int, root: Path
                  ) -> tuple[dict[str, StoredRows], int]:
    """``vm``'s cached inputs of every distinct clip, read from the store under ``root`` (clips not
    stored yet are encoded and added first), and how many clips were encoded."""
    store = FeatureStore(root / namespace(vm, clips.spec))
    device = next(vm.parameters()).device
    vm.eval()

    @torch.no_grad()
    def encode(idx: list[int]) -> dict[str, Any]:
        out = vm.inputs(clips.pixels[idx].to(device))
        return {k: v.cpu() if k == "pixel_values" else v.float().cpu() for k, v in out.items()}

    entries, encoded = fill(store, clip_keys(clips), encode, batch_size)
    return {f: StoredRows(store, f, entries) for f in store.fields}, encoded
