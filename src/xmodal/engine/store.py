"""Out-of-core feature store: frozen features on disk in memory-mapped shards, reused across runs.

A frozen tower is a pure function of its input, so what it computes for a clip can be kept on disk
and looked up by a key in every later run. One store folder holds the features of one *namespace*
(what computed them: the model's weights, the strategy and its options, see
``strategies/features.py``); inside it, a row's key is a 16-byte digest of what was encoded (a
file's content and its preprocessing). Layout::

    <folder>/<shard>.<field>.npy   rows of one field of the shard ([rows, *shape], any dtype)
    <folder>/<shard>.keys.npy      [rows, 16] uint8: the key of each row, written LAST

Crash safety: every file is written under a temporary name, flushed to disk and renamed, and a
shard's keys file goes last, so a shard is trusted only once all its fields are complete. A run
killed at any point leaves either a whole shard or files that no keys file vouches for (ignored;
:meth:`FeatureStore.prune` removes them). Shard names are unique (time + process id), so two
processes may fill one folder at once (a row both computed is stored twice; either copy is used).

Reading keeps RAM flat: a batch of rows is gathered from the shards' memory maps and the pages are
then released from the process (``madvise(MADV_DONTNEED)``; the kernel's page cache still holds them),
so resident memory stays at one batch however large the store; the index is a sorted array of keys
(16 bytes a row), not a dict.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

try:
    from mmap import MADV_DONTNEED
except ImportError:  # not Linux: pages stay mapped until the store is closed
    MADV_DONTNEED = None

KEYS = "keys"  # the field name of a shard's key file
KEY_BYTES = 16


def digest(*parts: str | bytes) -> bytes:
    """A 16-byte key of ``parts`` (BLAKE2b; parts joined unambiguously)."""
    h = hashlib.blake2b(digest_size=KEY_BYTES)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex BLAKE2b of a file's content (a renamed or touched file keeps its key; an edited one does not)."""
    h = hashlib.blake2b(digest_size=KEY_BYTES)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _write_npy(file: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``file`` atomically: a temporary file, flushed to disk, then renamed."""
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, file)


class _Mapped:
    """One ``.npy`` file memory-mapped read-only, as an array view."""

    def __init__(self, file: Path) -> None:
        with open(file, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
            self.map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        if fortran:
            raise ValueError(f"{file}: a Fortran-ordered array, not written by the store")
        count = int(np.prod(shape))
        self.array = np.frombuffer(self.map, dtype=dtype, count=count, offset=offset).reshape(shape)

    def release(self) -> None:
        """Drop this process's copy of the pages read so far (they stay in the page cache)."""
        if MADV_DONTNEED is not None and len(self.map):
            self.map.madvise(MADV_DONTNEED)


class FeatureStore:
    """The shards of one store folder: ``find(keys) -> entries``, ``take(field, entries) -> rows``,
    ``writer()`` to add rows. ``shard_mb``: the size of a shard file (rows buffered in RAM before a
    write)."""

    def __init__(self, folder: str | Path, shard_mb: float = 64.0) -> None:
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shard_mb = shard_mb
        self._maps: dict[tuple[str, str], _Mapped] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-read the index: every trusted shard (one with a keys file) of the folder."""
        self.shards = sorted(f.name[: -len(f".{KEYS}.npy")] for f in self.folder.glob(f"*.{KEYS}.npy"))
        keys, shard_of, row_of = [], [], []
        for s, name in enumerate(self.shards):
            k = np.load(self.folder / f"{name}.{KEYS}.npy", allow_pickle=False)
            keys.append(np.ascontiguousarray(k).view(f"V{KEY_BYTES}").reshape(-1))
            shard_of.append(np.full(len(k), s, np.int32))
            row_of.append(np.arange(len(k), dtype=np.int32))
        cat = (lambda parts, dt: np.concatenate(parts) if parts else np.empty(0, dt))
        self.keys, self.shard_of, self.row_of = cat(keys, f"V{KEY_BYTES}"), cat(shard_of, np.int32), cat(row_of, np.int32)
        self._order = np.argsort(self.keys, kind="stable")
        self._sorted = self.keys[self._order]
        self.fields = self._fields()

    def _fields(self) -> list[str]:
        """Field names of the stored shards (those of the first one; every shard of a folder has the same)."""
        if not self.shards:
            return []
        prefix = self.shards[0] + "."
        names = (f.name[len(prefix): -len(".npy")] for f in self.folder.glob(f"{self.shards[0]}.*.npy"))
        return sorted(n for n in names if n != KEYS)

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, keys: Sequence[bytes]) -> np.ndarray:
        """``[N]`` int64 entry of each key in the store, -1 where it is not stored."""
        if not len(keys):
            return np.empty(0, np.int64)
        query = np.frombuffer(b"".join(keys), dtype=f"V{KEY_BYTES}")
        if not len(self._sorted):
            return np.full(len(query), -1, np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, query), len(self._sorted) - 1)
        hit = self._sorted[pos] == query
        return np.where(hit, self._order[pos], -1).astype(np.int64)

    def _map(self, shard: int, field: str) -> _Mapped:
        key = (self.shards[shard], field)
        if key not in self._maps:
            self._maps[key] = _Mapped(self.folder / f"{key[0]}.{field}.npy")
        return self._maps[key]

    def take(self, field: str, entries: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``[N, *shape]`` rows of ``field`` at ``entries`` (from :meth:`find`), copied out of the maps."""
        entries = np.asarray(entries, dtype=np.int64)
        if len(entries) and (entries.min() < 0 or entries.max() >= len(self)):
            raise IndexError(f"{self.folder}: entries outside the store's {len(self)} rows")
        if field not in self.fields:
            raise KeyError(f"{self.folder}: no stored field {field!r} (fields: {', '.join(self.fields) or 'none'})")
        shards, rows = self.shard_of[entries], self.row_of[entries]
        template = self._map(0, field).array
        out = np.empty((len(entries), *template.shape[1:]), template.dtype)
        for s in np.unique(shards):
            mapped = self._map(int(s), field)
            mask = shards == s
            out[mask] = mapped.array[rows[mask]]
            mapped.release()
        return torch.from_numpy(out)

    def writer(self) -> "StoreWriter":
        """A writer that adds rows in shards of about ``shard_mb`` (use as a context manager)."""
        return StoreWriter(self)

    def nbytes(self) -> int:
        """Bytes of the store's files on disk."""
        return sum(f.stat().st_size for f in self.folder.glob("*.npy"))

    def prune(self) -> int:
        """Remove the files no keys file vouches for (left by a killed run); the number removed. Only
        while no other process writes into the folder."""
        trusted = set(self.shards)
        stale = [f for f in self.folder.iterdir() if f.name.endswith(".tmp") or
                 (f.name.endswith(".npy") and f.name.split(".")[0] not in trusted)]
        for f in stale:
            f.unlink()
        return len(stale)

    def close(self) -> None:
        """Unmap the shards (a later :meth:`take` maps them again)."""
        self._maps.clear()


class StoreWriter:
    """Buffers added rows and writes them in shards (see the module doc for the crash-safe order)."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.written = 0  # rows written to disk by this writer
        self._keys: list[bytes] = []
        self._fields: dict[str, list[np.ndarray]] = {}
        self._rows_per_shard = 0

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:  # an exception: what is buffered is dropped, the shards written stay valid
            self.close()

    def add(self, keys: Sequence[bytes], fields: dict[str, torch.Tensor | np.ndarray]) -> None:
        """Add one row per key; ``fields``: name -> ``[len(keys), ...]`` (the same names and row shapes
        every call)."""
        arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in fields.items()}
        if KEYS in arrays or any(len(a) != len(keys) for a in arrays.values()):
            raise ValueError(f"{self.store.folder}: each field needs one row per key, and none may be named {KEYS!r}")
        if self._fields and sorted(arrays) != sorted(self._fields):
            raise ValueError(f"{self.store.folder}: fields {sorted(arrays)} differ from {sorted(self._fields)}")
        if not self._rows_per_shard:
            self._check_rows(arrays)
            row_bytes = sum(a[:1].nbytes for a in arrays.values()) or 1
            self._rows_per_shard = max(1, int(self.store.shard_mb * (1 << 20)) // row_bytes)
        self._keys.extend(keys)
        for k, a in arrays.items():
            self._fields.setdefault(k, []).append(a)
        while len(self._keys) >= self._rows_per_shard:
            self._flush(self._rows_per_shard)

    def _check_rows(self, arrays: dict[str, np.ndarray]) -> None:
        """A ValueError unless ``arrays`` have the stored shards' fields, row shapes and dtypes."""
        if not self.store.fields:
            return
        stored = {f: self.store._map(0, f).array for f in self.store.fields}
        have = {k: (a.shape[1:], a.dtype) for k, a in arrays.items()}
        want = {k: (a.shape[1:], a.dtype) for k, a in stored.items()}
        if have != want:
            raise ValueError(f"{self.store.folder}: rows {have} do not match the stored rows {want}")

    def _flush(self, rows: int) -> None:
        """Write the first ``rows`` buffered rows as one shard: fields first, the keys file last."""
        name = f"{time.time_ns():016x}-{os.getpid()}"
        for k, parts in self._fields.items():
            joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
            _write_npy(self.store.folder / f"{name}.{k}.npy", joined[:rows])
            self._fields[k] = [joined[rows:]]
        keys = np.frombuffer(b"".join(self._keys[:rows]), np.uint8).reshape(rows, KEY_BYTES)
        _write_npy(self.store.folder / f"{name}.{KEYS}.npy", keys)
        del self._keys[:rows]
        self.written += rows

    def close(self) -> None:
        """Write the rows still buffered and re-read the store's index."""
        if self._keys:
            self._flush(len(self._keys))
        self.store.refresh()


def fill(store: FeatureStore, keys: Sequence[bytes], encode: Any, batch_size: int) -> tuple[np.ndarray, int]:
    """Entries of ``keys`` in ``store``, encoding only the missing ones: ``encode(indices) -> {field:
    [len(indices), ...]}`` over positions of ``keys``, called in batches of ``batch_size``. Returns the
    entries and the number of rows encoded (0 when every key was stored)."""
    entries = store.find(keys)
    todo = [int(i) for i in np.unique(np.flatnonzero(entries < 0))]
    seen: dict[bytes, int] = {}
    todo = [i for i in todo if seen.setdefault(keys[i], i) == i]  # a key twice in ``keys``: encoded once
    with store.writer() as w:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start: start + batch_size]
            w.add([keys[i] for i in chunk], encode(chunk))
    return (store.find(keys) if todo else entries), len(todo)


class StoredRows:
    """Rows of one stored field seen as a tensor over positions: ``rows[idx]`` (a LongTensor of
    positions) gathers those rows from the memory maps, floating point as float32."""

    def __init__(self, store: FeatureStore, field: str, entries: np.ndarray) -> None:
        self.store, self.field, self.entries = store, field, np.asarray(entries, np.int64)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, idx: torch.Tensor | Iterable[int]) -> torch.Tensor:
        idx = idx.cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(list(idx), np.int64)
        rows = self.store.take(self.field, self.entries[idx])
        return rows.float() if rows.is_floating_point() else rows
