"""Walk media sources, work out what changed since the last run, embed it in committed chunks.

An incremental run compares each file with its row: same mtime and size -> unchanged (nothing read);
otherwise the content hash decides between "touched" (metadata updated, not re-embedded) and
"changed" (re-embedded). Files under the run's roots that are gone are dropped, unless a root lost
all or more than half of its files (an empty or unmounted folder): then the run refuses, changing
nothing, unless ``prune``. A manifest indexes only files under its own folder (its root); rows
pointing outside it are skipped with a reason, so that no outside folder becomes a root. Embedding runs in
chunks of ``chunk`` files, each committed in one SQLite transaction, so a killed run loses at most one
chunk and the next run resumes from there. ``shard="i/n"`` keeps the i-th of n disjoint parts of the
files (by a hash of the path relative to its root), so n machines can build parts that are merged.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from xmodal.engine.progress import progress as progress_bar

from xmodal.errors import ConfigError, DataError
from xmodal.index.store import Row, Store

MEDIA = ("image", "video", "audio")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json-lines", ".ndjson")
MANIFEST_COLUMNS = ("path", "audio", "video", "image", "file")
SLEEP_ENV = "XMODAL_INDEX_TEST_SLEEP"  # test hook: seconds to sleep after each committed chunk


@dataclass
class BuildConfig:
    batch_size: int = 32  # files per forward pass of a tower
    workers: int = 0  # DataLoader worker processes decoding files in parallel (0 = in this process)
    replicas: int = 1  # CPU: worker processes that each decode and embed whole batches on one thread (1 = off)
    chunk: int = 256  # files embedded per committed transaction (a kill loses at most one chunk)
    shard: str = ""  # "i/n": index only the i-th of n disjoint parts of the files ("" = all)
    progress: bool = True  # show a progress bar with files/s
    prune: bool = False  # drop the rows of a root that vanished or lost over half its files (else: refuse)
    precision: str = "fp32"  # fp32|auto|bf16|fp16 autocast of the towers (auto: fastest safe one for the
    # device, see engine/precision.py; fp32 by default; vectors are stored fp32 either way)


@dataclass
class BuildReport:
    embedded: int = 0  # files embedded (new or changed content)
    touched: int = 0  # files whose mtime changed but content did not (not re-embedded)
    unchanged: int = 0  # files with the same mtime and size as in the index
    deleted: int = 0  # rows dropped because their file is gone
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, problem) of unreadable files
    seconds: float = 0.0  # wall time of the run
    changed_modalities: set[str] = field(default_factory=set)  # modalities whose vectors changed


@dataclass
class Item:
    path: str  # absolute resolved path
    root: str  # absolute resolved root folder
    modality: str  # media modality by extension


def parse_shard(shard: str) -> tuple[int, int] | None:
    if not shard:
        return None
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ConfigError(f"shard {shard!r} is not of the form i/n (e.g. 0/4)") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"shard {shard!r}: need 0 <= i < n")
    return i, n


def in_shard(item: Item, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    rel = os.path.relpath(item.path, item.root)
    return int.from_bytes(hashlib.blake2b(rel.encode(), digest_size=8).digest(), "big") % shard[1] == shard[0]


def walk(sources: Sequence[str | Path], exclude: Path | None = None) -> tuple[list[Item], list[tuple[str, str]]]:
    """Media files of folders (recursively) and manifests; returns (items, skipped)."""
    items: dict[str, Item] = {}
    skipped: list[tuple[str, str]] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            _walk_folder(source.resolve(), items, skipped, exclude)
        elif source.is_file() and source.suffix.lower() in MANIFEST_SUFFIXES:
            _walk_manifest(source, items, skipped)
        else:
            raise DataError(source, "not a folder or a manifest (.csv/.tsv/.jsonl)" if source.exists()
                            else "no such folder or manifest")
    return sorted(items.values(), key=lambda it: it.path), skipped


def _media_modality(path: Path) -> str | None:
    from xmodal.modalities import modality_of

    try:
        m = modality_of(str(path))
    except DataError:
        return None
    return m if m in MEDIA else None


def _add(path: Path, root: Path, items: dict[str, Item], skipped: list, exclude: Path | None) -> None:
    modality = _media_modality(path)
    if modality is None:
        return
    real = path.resolve()
    if exclude is not None and real.is_relative_to(exclude):
        return
    if not real.is_file():
        skipped.append((str(path), "no such file"))
    elif not real.is_relative_to(root):
        skipped.append((str(path), f"resolves outside the indexed root {root}"))
    else:
        items[str(real)] = Item(str(real), str(root), modality)


def _walk_folder(root: Path, items: dict, skipped: list, exclude: Path | None) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                _add(Path(dirpath) / name, root, items, skipped, exclude)


def _walk_manifest(manifest: Path, items: dict, skipped: list) -> None:
    from xmodal.data.manifest import read_manifest

    folder = manifest.resolve().parent
    for row in read_manifest(manifest):
        for col in MANIFEST_COLUMNS:
            value = (row.get(col) or "").strip() if isinstance(row.get(col), str) else None
            if not value:
                continue
            path = Path(value) if Path(value).is_absolute() else folder / value
            try:
                inside = path.resolve().is_relative_to(folder)
            except (OSError, ValueError, RuntimeError):
                skipped.append((value, "not a valid file path"))
                continue
            if inside:
                _add(path, folder, items, skipped, None)
            else:  # never make a folder outside the manifest's an indexed (served) root
                skipped.append((value, f"outside the manifest's folder {folder}: refused (index that folder itself)"))


def file_hash(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def duration_of(path: str, modality: str) -> float | None:
    """Length in seconds of a file as its modality says (None for stills, or when unknown)."""
    from xmodal.modalities import MODALITIES

    try:
        return MODALITIES.get(modality).duration(Path(path))
    except Exception:  # noqa: BLE001 - metadata is best effort; decoding errors surface when embedding
        return None


@dataclass
class Plan:
    todo: list[Row]  # rows to embed (hash filled in when embedded)
    touched: list[Row]  # same content, new mtime/size
    unchanged: int  # same mtime and size
    deleted: list[Row]  # rows whose file is gone


def plan(store: Store, items: list[Item], shard: tuple[int, int] | None, roots: set[str]) -> Plan:
    known = store.snapshot()
    todo, touched, unchanged = [], [], 0
    for it in items:
        if not in_shard(it, shard):
            continue
        st = os.stat(it.path)
        old = known.get(it.path)
        if old is not None and old.mtime_ns == st.st_mtime_ns and old.size == st.st_size:
            unchanged += 1
            continue
        row = Row(it.path, it.root, it.modality, None, st.st_mtime_ns, st.st_size, "")
        if old is not None and old.modality == it.modality and file_hash(it.path) == old.hash:
            row.id, row.hash = old.id, old.hash
            touched.append(row)
        else:
            todo.append(row)
    seen = {it.path for it in items}
    deleted = [r for p, r in known.items() if r.root in roots and p not in seen]
    return Plan(todo, touched, unchanged, deleted)


def guard_prune(store: Store, deleted: list[Row], prune: bool) -> None:
    """Refuse (a DataError, nothing written) to drop the rows of a root that vanished (an empty or
    unmounted folder) or lost more than half of its files, unless ``prune``."""
    if prune or not deleted:
        return
    had = Counter(r.root for r in store.snapshot().values())
    for root, lost in sorted(Counter(r.root for r in deleted).items()):
        if 2 * lost > had[root]:
            what = "all" if lost == had[root] else f"{lost} of {had[root]}"
            raise DataError(root, f"{what} of its indexed files are gone (an empty or unmounted folder?); "
                                  "nothing was changed; pass --prune to drop their rows")


def run(store: Store, model: Any, sources: Sequence[str | Path], cfg: BuildConfig) -> BuildReport:
    """Bring ``store`` up to date with ``sources`` (see the module docstring)."""
    start = time.perf_counter()
    items, skipped = walk(sources, exclude=store.folder.resolve())
    roots = {it.root for it in items} | {str(Path(s).resolve()) for s in sources if Path(s).is_dir()}
    p = plan(store, items, parse_shard(cfg.shard), roots)
    guard_prune(store, p.deleted, cfg.prune)
    report = BuildReport(touched=len(p.touched), unchanged=p.unchanged, deleted=len(p.deleted), skipped=skipped)
    with store.transaction():
        store.touch(p.touched)
        store.delete(r.id for r in p.deleted)
    report.changed_modalities |= {r.modality for r in p.deleted}
    embeddable = [r for r in p.todo if r.modality in model.modalities]
    for r in p.todo:
        if r.modality not in model.modalities:
            report.skipped.append((r.path, f"model has no {r.modality} tower"))
    bar = progress_bar(None, cfg.progress, total=len(embeddable), unit=" files", desc="indexing")
    for modality in MEDIA:
        rows = [r for r in embeddable if r.modality == modality]
        for i in range(0, len(rows), cfg.chunk):
            _embed_chunk(store, model, rows[i:i + cfg.chunk], cfg, report)
            bar.update(len(rows[i:i + cfg.chunk]))
    bar.close()
    report.seconds = time.perf_counter() - start
    return report


def _embed_chunk(store: Store, model: Any, rows: list[Row], cfg: BuildConfig, report: BuildReport) -> None:
    from xmodal.tasks.embed import embed

    modality = rows[0].modality
    out = embed(model, modality, [r.path for r in rows], batch_size=cfg.batch_size, num_workers=cfg.workers,
                on_error="skip", progress=False, precision=cfg.precision, replicas=cfg.replicas)
    report.skipped.extend(out.skipped)
    kept = [rows[i] for i in out.kept]
    for r in kept:
        r.hash = file_hash(r.path)
        r.duration = duration_of(r.path, modality)
    if kept:
        with store.transaction():
            store.put(kept, out.vectors.numpy())
        report.embedded += len(kept)
        report.changed_modalities.add(modality)
    delay = float(os.environ.get(SLEEP_ENV, "0") or 0)
    if delay:
        time.sleep(delay)


def merge_rows(out: Store, shards: Sequence[Store]) -> int:
    """Copy every row (with its vector) of ``shards`` into ``out``; the newest file wins a clash."""
    n = 0
    with out.transaction():
        for shard in shards:
            known = out.snapshot()
            for row, blob in shard.iter_all():
                old = known.get(row.path)
                if old is not None and old.mtime_ns >= row.mtime_ns:
                    continue
                out.put([row], np.frombuffer(blob, dtype=np.float32)[None])
                n += 1
    return n
