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

Out of core (:func:`stored_split`): a transfer run keys every file first (hashing streams it, 1 MB
at a time); a clip whose key is stored is never decoded; the missing ones are decoded a chunk at a
time, encoded, written to the store and their pixels dropped; training then reads the features from
the store's memory maps. RAM holds one chunk of pixels and the store's index, not the split.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch

import numpy as np

from xmodal.data.manifest import resolve_path
from xmodal.engine.store import FeatureStore, StoredRows, digest, file_digest, fill
from xmodal.errors import DataError
from xmodal.strategies.base import VideoModel
from xmodal.strategies.data import ClipSet, Loading, Stored, decode_chunks, kept_rows, split_paths

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


def clip_key(path: Path, spec: Any) -> bytes:
    """The store key of the clip in ``path`` sampled and preprocessed by ``spec``: its file's content and ``spec``."""
    return digest(file_digest(path), repr(spec))


def clip_keys(clips: ClipSet) -> list[bytes]:
    """The store key of each distinct clip of ``clips`` (:func:`clip_key`)."""
    return [clip_key(resolve_path(clips.root, p), clips.spec) for p in clips.paths]


def _keys(paths: Sequence[str], spec: Any, root: Path | None, on_error: str
          ) -> tuple[list[bytes | None], list[tuple[str, str]]]:
    """Each file's store key (None for an unreadable one with ``on_error="skip"``) and the skipped files."""
    keys: list[bytes | None] = []
    skipped: list[tuple[str, str]] = []
    for p in paths:
        path = resolve_path(root, p)
        try:
            keys.append(clip_key(path, spec))
        except OSError as exc:
            if on_error == "raise":
                raise DataError(path, f"cannot read the file ({exc.strerror or exc})") from None
            keys.append(None)
            skipped.append((str(path), f"cannot read the file ({exc.strerror or exc})"))
    return keys, skipped


def _encoder(vm: VideoModel):
    """``encode(pixels) -> {field: rows}``: ``vm``'s frozen cache of a chunk of clips, on the CPU."""
    device = next(vm.parameters()).device

    @torch.no_grad()
    def encode(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = vm.inputs(pixels.to(device))
        return {k: v.cpu() if k == "pixel_values" else v.float().cpu() for k, v in out.items()}

    return encode


def _fill_missing(store: FeatureStore, vm: VideoModel, paths: Sequence[str], keys: Sequence[bytes | None],
                  spec: Any, load: Loading, skipped: list[tuple[str, str]]) -> tuple[np.ndarray, int]:
    """Entries of ``keys`` in ``store`` (-1: unreadable), decoding and encoding only the clips not stored
    yet, ``load.chunk`` at a time (each chunk's pixels are dropped once its features are written)."""
    known = [k if k is not None else b"\0" * 16 for k in keys]
    entries = store.find(known)
    seen: dict[bytes, int] = {}
    todo = [i for i in np.flatnonzero(entries < 0).tolist() if keys[i] is not None and seen.setdefault(keys[i], i) == i]
    if not todo:
        return np.where([k is None for k in keys], -1, entries), 0
    vm.eval()
    encode, encoded = _encoder(vm), 0
    with store.writer() as w:
        for pixels, index in decode_chunks([paths[i] for i in todo], spec, load.root, load.on_error,
                                           load.num_workers, load.desc, load.chunk, skipped):
            w.add([keys[todo[j]] for j in index], encode(pixels))
            encoded += len(index)
            del pixels
    return np.where([k is None for k in keys], -1, store.find(known)), encoded


def stored_split(vm: VideoModel, rows: Sequence[dict[str, Any]], spec: Any, root: Path, load: Loading
                 ) -> ClipSet:
    """The clips of ``rows`` as ``vm``'s frozen features in the store under ``root``, never held as pixels:
    stored clips are not decoded, missing ones are decoded, encoded and written ``load.chunk`` at a time.
    The ClipSet's targets are empty (the caller builds its task's)."""
    t0 = time.perf_counter()
    paths = split_paths(rows, load.path_column, load.desc)
    keys, skipped = _keys(paths, spec, load.root, load.on_error)
    store = FeatureStore(root / namespace(vm, spec))
    entries, encoded = _fill_missing(store, vm, paths, keys, spec, load, skipped)
    kept = np.flatnonzero(entries >= 0).tolist()
    if not kept:
        raise DataError(load.desc, f"every clip was unreadable ({len(skipped)} skipped)")
    rows, clip = kept_rows(rows, paths, kept, load.path_column)
    inputs = {f: StoredRows(store, f, entries[kept]) for f in store.fields}
    return ClipSet(None, clip, {}, [paths[k] for k in kept], rows, list(dict.fromkeys(skipped)), load.root, spec,
                   Stored(inputs, encoded, time.perf_counter() - t0))


def stored_inputs(vm: VideoModel, clips: ClipSet, batch_size: int, root: Path
                  ) -> tuple[dict[str, StoredRows], int]:
    """``vm``'s cached inputs of every distinct clip, read from the store under ``root`` (clips not
    stored yet are encoded and added first), and how many clips were encoded."""
    store = FeatureStore(root / namespace(vm, clips.spec))
    vm.eval()
    encode = _encoder(vm)
    entries, encoded = fill(store, clip_keys(clips), lambda idx: encode(clips.pixels[idx]), batch_size)
    return {f: StoredRows(store, f, entries) for f in store.fields}, encoded
