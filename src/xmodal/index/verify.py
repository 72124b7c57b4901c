"""Checks of an index folder's files before they are used, and the one-line errors they raise.

``index.sqlite`` (the rows: the truth) is checked for its SQLite header and for truncation against
the page count the header records; a damaged store cannot be repaired, only rebuilt from the media.
``ann.json`` must have the recorded shape (a generation, one entry per modality with its kind, and
``nprobe`` for an IVF or IVF-PQ index). Each ``ann.<modality>.faiss`` must match the size and the
content hash recorded for it in ``ann.json``, be the kind recorded there, and hold as many vectors of
the store's dimension as the store has rows of that modality; any of these files, being derived from the rows, is rebuilt by
``xmodal index --repair`` (:func:`xmodal.index.Index.repair`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from xmodal.errors import CheckpointError
from xmodal.index import ann as ann_lib
from xmodal.index.store import DB_FILE, STORE_TABLES

ANN_META = "ann.json"
KINDS = ("flat", "ivf", "ivfpq")
PROBED = ("ivf", "ivfpq")  # kinds that record the nprobe their calibration chose
SQLITE_MAGIC = b"SQLite format 3\x00"


def repair_hint(folder: Path) -> str:
    return f"run `xmodal index --repair --out {folder}` to rebuild it from {DB_FILE}"


def rebuild_hint() -> str:
    return ("it cannot be repaired: build the index again from the media "
            "(`xmodal index SOURCES --model MODEL --out NEW_FOLDER`)")


def damaged_ann(folder: Path, file: Path, problem: str) -> CheckpointError:
    """The error for a damaged derived file (FAISS index or ``ann.json``): repairable."""
    return CheckpointError(f"{file}: {problem}; {repair_hint(folder)}")


def damaged_store(folder: Path, problem: Any) -> CheckpointError:
    """The error for a damaged ``index.sqlite``: only a rebuild from the media helps."""
    detail = " ".join(str(problem).split())
    return CheckpointError(f"{Path(folder) / DB_FILE}: damaged index store ({detail}); {rebuild_hint()}")


def sqlite_file_problem(folder: Path) -> str | None:
    """What is wrong with ``index.sqlite`` as a file: not SQLite, or shorter than its header says."""
    path = Path(folder) / DB_FILE
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as f:
        head = f.read(100)
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        return "not an SQLite database"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    header_valid = head[24:28] == head[92:96]  # the recorded page count is trusted only then
    if header_valid and path.stat().st_size < page * pages:
        return f"truncated: {path.stat().st_size} of {page * pages} bytes"
    return None


def check_sqlite_file(folder: Path) -> None:
    """Raise the one-line error of :func:`sqlite_file_problem` or :func:`missing_tables`, if any."""
    problem = sqlite_file_problem(folder) or missing_tables(folder)
    if problem:
        raise damaged_store(folder, problem)


def missing_tables(folder: Path) -> str | None:
    """Which of the store's tables an existing, non-empty ``index.sqlite`` lacks (opening it would
    otherwise create them empty and the index would silently hold nothing)."""
    path = Path(folder) / DB_FILE
    if not path.is_file() or path.stat().st_size == 0:
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # read-only: closing must not checkpoint a WAL into it
    try:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        db.close()
    lost = [t for t in STORE_TABLES if t not in names]
    return f"missing table(s) {', '.join(lost)}" if lost else None


def integrity_problem(folder: Path) -> str | None:
    """What SQLite's full integrity check finds wrong with ``index.sqlite`` (None: it is sound)."""
    problem = sqlite_file_problem(folder)
    if problem:
        return problem
    db = sqlite3.connect(f"file:{Path(folder) / DB_FILE}?mode=ro", uri=True)
    try:
        found = [r[0] for r in db.execute("PRAGMA integrity_check(5)")]
        db.execute("SELECT COUNT(*), SUM(LENGTH(vector)) FROM files").fetchone()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        db.close()
    return None if found == ["ok"] else "; ".join(found)


def read_ann_meta(folder: Path) -> dict[str, Any]:
    """``ann.json`` checked for its shape ({} when there is none)."""
    file = Path(folder) / ANN_META
    if not file.is_file():
        return {}
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged_ann(folder, file, f"not valid JSON ({' '.join(str(exc).split())})") from None
    problem = meta_problem(meta)
    if problem:
        raise damaged_ann(folder, file, problem)
    return meta


def meta_problem(meta: Any) -> str | None:
    """What is wrong with the shape of a parsed ``ann.json`` (None: nothing)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("generation"), int):
        return "expected an object with an integer 'generation'"
    if not isinstance(meta.get("modalities"), dict) or not isinstance(meta.get("files", {}), dict):
        return "expected 'modalities' (and 'files') to be objects"
    for modality, params in meta["modalities"].items():
        if not isinstance(params, dict) or params.get("kind") not in KINDS:
            return f"entry {modality!r} has no kind (one of {list(KINDS)})"
        if not all(isinstance(params.get(key), int) for key in ("count", "dim")):
            return f"entry {modality!r} has no integer count and dim"
        if params["kind"] in PROBED and not (isinstance(params.get("nprobe"), int) and params["nprobe"] >= 1):
            return f"{params['kind']} entry {modality!r} has no valid nprobe"
    for modality, rec in meta.get("files", {}).items():
        if not (isinstance(rec, dict) and isinstance(rec.get("bytes"), int) and isinstance(rec.get("blake2b"), str)):
            return f"file record {modality!r} has no bytes and blake2b"
    return None


def file_record(path: Path) -> dict[str, Any]:
    """Size and content hash of a written FAISS file, as ``ann.json`` records them."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "blake2b": h.hexdigest()}


def load_checked(folder: Path, modality: str, meta: dict[str, Any], count: int, dim: int) -> Any:
    """The FAISS index of ``modality``, after checking it against ``ann.json`` and the store."""
    file = Path(folder) / f"ann.{modality}.faiss"
    params, rec = meta["modalities"][modality], meta.get("files", {}).get(modality)
    if rec is not None:
        size = file.stat().st_size
        if size != rec["bytes"]:
            raise damaged_ann(folder, file, f"{size} bytes, {rec['bytes']} were written (truncated or replaced)")
        if file_record(file)["blake2b"] != rec["blake2b"]:
            raise damaged_ann(folder, file, "content differs from what was written (damaged or replaced)")
    try:
        index = ann_lib.load_ann(file)
    except (RuntimeError, MemoryError):
        raise damaged_ann(folder, file, "unreadable FAISS file (truncated or not written by xmodal)") from None
    from xmodal.index.pq import kind_of

    found = kind_of(index)
    if found != params["kind"]:
        raise damaged_ann(folder, file, f"is a {found} index, ann.json says {params['kind']}")
    if index.ntotal != count or index.d != dim or params["count"] != count:
        raise damaged_ann(folder, file, f"holds {index.ntotal} vectors of {index.d} dims; "
                          f"the store has {count} of {dim}")
    if params["kind"] in PROBED:
        ann_lib.set_nprobe(index, params["nprobe"])
    return index
