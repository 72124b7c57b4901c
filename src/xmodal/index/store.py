"""The metadata store of an index: one SQLite file, the source of truth for rows and vectors.

Each row is one media file: absolute path, the root it was indexed from, modality, duration
(seconds; None for images), mtime (ns), size, content hash and its embedding (float32 blob). Every
write is one SQLite transaction that also bumps ``generation``, so a crash or kill leaves the last
committed state readable; the FAISS files are derived from it and rebuilt when they lag behind.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

DB_FILE = "index.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT UNIQUE NOT NULL,
    root TEXT NOT NULL,
    modality TEXT NOT NULL,
    duration REAL,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS files_modality ON files (modality);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
STORE_TABLES = ("files", "meta")  # the tables of SCHEMA: an existing store lacking one is damaged


@dataclass
class Row:
    path: str  # absolute path of the media file
    root: str  # absolute folder it was indexed from (only files inside it are ever served)
    modality: str  # "image", "video" or "audio"
    duration: float | None  # seconds (None for images or when unknown)
    mtime_ns: int  # modification time, nanoseconds
    size: int  # bytes
    hash: str  # content hash (blake2b-128 hex)
    id: int | None = None  # row id = the FAISS id


class Store:
    """SQLite rows + vectors of one index folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.folder / DB_FILE, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.lock = threading.RLock()  # one statement at a time when threads share the connection

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, **values: Any) -> None:
        with self.transaction():
            self._set_meta(values)

    def _set_meta(self, values: dict[str, Any]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in values.items()])

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation", 0))

    def transaction(self) -> "_Transaction":
        """A write transaction that bumps ``generation`` on commit (all or nothing)."""
        return _Transaction(self)

    # ------------------------------------------------------------------ rows
    def snapshot(self) -> dict[str, Row]:
        """Every row without its vector, by path."""
        cols = "id, path, root, modality, duration, mtime_ns, size, hash"
        return {r[1]: Row(id=r[0], path=r[1], root=r[2], modality=r[3], duration=r[4], mtime_ns=r[5],
                          size=r[6], hash=r[7]) for r in self.db.execute(f"SELECT {cols} FROM files")}

    def count(self, modality: str | None = None) -> int:
        if modality is None:
            return self.db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM files WHERE modality=?", (modality,)).fetchone()[0]

    def modalities(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT modality FROM files ORDER BY modality")]

    def put(self, rows: list[Row], vectors: np.ndarray) -> list[int]:
        """Insert (or replace, by path) rows with their vectors; returns their new ids."""
        ids = []
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.db.executemany("DELETE FROM files WHERE path=?", [(r.path,) for r in rows])
        for r, v in zip(rows, vectors):
            cur = self.db.execute(
                "INSERT INTO files (path, root, modality, duration, mtime_ns, size, hash, vector) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (r.path, r.root, r.modality, r.duration, r.mtime_ns, r.size, r.hash, v.tobytes()))
            ids.append(cur.lastrowid)
        return ids

    def touch(self, rows: Iterable[Row]) -> None:
        """Record a new mtime/size for files whose content (hash) did not change."""
        self.db.executemany("UPDATE files SET mtime_ns=?, size=? WHERE id=?",
                            [(r.mtime_ns, r.size, r.id) for r in rows])

    def delete(self, ids: Iterable[int]) -> None:
        self.db.executemany("DELETE FROM files WHERE id=?", [(int(i),) for i in ids])

    def rows(self, ids: Iterable[int]) -> dict[int, Row]:
        ids = [int(i) for i in ids]
        out = {}
        with self.lock:
            self._rows(ids, out)
        return out

    def _rows(self, ids: list[int], out: dict[int, Row]) -> None:
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            q = ",".join("?" * len(part))
            for r in self.db.execute(
                    f"SELECT id, path, root, modality, duration, mtime_ns, size, hash FROM files WHERE id IN ({q})",
                    part):
                out[r[0]] = Row(id=r[0], path=r[1], root=r[2], modality=r[3], duration=r[4], mtime_ns=r[5],
                                size=r[6], hash=r[7])

    def row_by_path(self, path: str) -> Row | None:
        with self.lock:
            r = self.db.execute("SELECT id FROM files WHERE path=?", (path,)).fetchone()
        return self.rows([r[0]])[r[0]] if r else None

    def vectors(self, modality: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [N] int64, vectors [N, dim] float32)`` of one modality."""
        ids, blobs = [], []
        for i, blob in self.db.execute("SELECT id, vector FROM files WHERE modality=? ORDER BY id", (modality,)):
            ids.append(i)
            blobs.append(blob)
        vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), dim)
        return np.asarray(ids, dtype=np.int64), vecs

    def vectors_by_id(self, ids: np.ndarray, dim: int) -> np.ndarray:
        """``[len(ids), dim]`` float32 vectors of rows ``ids``, in that order (re-ranking reads them)."""
        want = [int(i) for i in ids]
        found: dict[int, bytes] = {}
        with self.lock:
            for start in range(0, len(want), 500):
                part = want[start:start + 500]
                q = ",".join("?" * len(part))
                found.update(self.db.execute(f"SELECT id, vector FROM files WHERE id IN ({q})", part).fetchall())
        missing = [i for i in want if i not in found]
        if missing:
            raise KeyError(f"rows {missing[:5]} are not in {self.folder / DB_FILE}")
        return np.frombuffer(b"".join(found[i] for i in want), dtype=np.float32).reshape(len(want), dim)

    def iter_all(self) -> Iterator[tuple[Row, bytes]]:
        cols = "id, path, root, modality, duration, mtime_ns, size, hash, vector"
        for r in self.db.execute(f"SELECT {cols} FROM files ORDER BY id"):
            yield Row(id=None, path=r[1], root=r[2], modality=r[3], duration=r[4], mtime_ns=r[5], size=r[6],
                      hash=r[7]), r[8]


class _Transaction:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> Store:
        self.store.db.execute("BEGIN IMMEDIATE")
        return self.store

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.store.db.execute("ROLLBACK")
            return
        gen = self.store.generation + 1
        self.store._set_meta({"generation": gen})
        self.store.db.execute("COMMIT")
