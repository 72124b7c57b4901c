"""Users' own data in plain forms: CSV/TSV/JSONL manifests, folders of class folders, a Dataset.

A manifest is one row per example; columns hold file paths (relative to the manifest's folder, or
absolute), captions, labels and anything else (``split``, ...). Every problem is a DataError naming
the file and line (``manifest.csv:7: ...``) or the row.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from xmodal.errors import ConfigError, DataError
from xmodal.modalities import MODALITIES
from xmodal.modalities.text import check_text

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".json-lines", ".ndjson")
ON_ERROR = ("raise", "skip")


def read_manifest(path: str | Path, required: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV (header line first) or JSONL manifest (one JSON object per line), as dicts.

    Raises a DataError ``"{path}:{line}: ..."`` for a row whose field count differs from the header,
    a bad JSON line, a missing ``required`` column (naming the columns there are) or no rows."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES and suffix not in JSONL_SUFFIXES:
        known = ", ".join([*CSV_SUFFIXES, *JSONL_SUFFIXES])
        raise DataError(path, f"unknown manifest type {suffix!r} (expected {known})")
    if not path.is_file():
        raise DataError(path, "no such manifest file" if not path.exists() else "not a file")
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            if suffix in CSV_SUFFIXES:
                rows = _read_csv(f, path, CSV_SUFFIXES[suffix], required)
            else:
                rows = _read_jsonl(f, path, required)
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text") from None
    if not rows:
        raise DataError(path, "empty manifest (no rows)")
    return rows


def _read_csv(f: Any, path: Path, delimiter: str, required: Sequence[str]) -> list[dict[str, Any]]:
    reader = csv.DictReader(f, delimiter=delimiter, skipinitialspace=delimiter == ",")
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise DataError(f"{path}:1", f"bad header ({exc})") from None
    if not header:
        return []
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or "" in header:
        raise DataError(f"{path}:1", f"empty or repeated column names in header {header}")
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}:1", f"missing required column(s) {missing}; columns are {header}")
    rows = []
    try:
        for row in reader:
            if None in row:  # more fields than the header (the extra ones land under key None)
                n = len(header) + len(row[None])
                raise DataError(f"{path}:{reader.line_num}", f"{n} fields but the header has {len(header)} columns")
            if any(v is None for v in row.values()):  # fewer fields than the header
                n = sum(v is not None for v in row.values())
                raise DataError(f"{path}:{reader.line_num}", f"{n} fields but the header has {len(header)} columns")
            rows.append(row)
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}", f"malformed CSV ({exc})") from None
    return rows


def _read_jsonl(f: Any, path: Path, required: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for line_no, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line_no}", f"bad JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line_no}", f"expected a JSON object, got {type(row).__name__}")
        missing = [c for c in required if c not in row]
        if missing:
            raise DataError(f"{path}:{line_no}", f"missing required column(s) {missing}; row has {sorted(row)}")
        rows.append(row)
    return rows


def check_rows(rows: Sequence[dict[str, Any]], source: str | Path, columns: Sequence[str] = (),
               text_columns: Sequence[str] = (), path_columns: Sequence[str] = ()) -> None:
    """The one check of manifest cells: every row has a non-empty scalar value in each of ``columns``,
    valid, non-empty text in each of ``text_columns`` and a string in each of ``path_columns``; else a
    DataError ``"{source} row {i}: ..."`` (``i`` counts rows from 0, as :class:`MediaDataset` does)."""
    for i, row in enumerate(rows):
        where = f"{source} row {i}"
        for col in path_columns:
            if col in row and row[col] is not None and not isinstance(row[col], str):
                raise DataError(where, f"column {col!r} holds {type(row[col]).__name__} {row[col]!r}, not a file path")
        for col in dict.fromkeys([*columns, *text_columns, *path_columns]):
            if col not in row:
                raise DataError(where, f"no column {col!r}; the row has {sorted(row)}")
            value = row[col]
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DataError(where, f"empty value in column {col!r}")
            if isinstance(value, (dict, list)):
                raise DataError(where, f"column {col!r} holds a JSON {type(value).__name__}, not a single value")
        for col in text_columns:  # a number (a JSONL label 3) is text too
            value = row[col]
            check_text(value if isinstance(value, str) else str(value), f"{where} column {col!r}")


def drop_duplicates(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """``rows`` without repeats of an identical row (first kept, order kept) and how many were dropped."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        key = json.dumps(row, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def resolve_path(root: str | Path | None, value: str | Path) -> Path:
    """The file a manifest value names: absolute paths (and ``~``) as they are, relative ones
    relative to ``root`` (the manifest's folder; the working directory when None)."""
    path = Path(value).expanduser()
    if path.is_absolute() or root is None:
        return path
    return Path(root) / path


def _modality_by_suffix() -> dict[str, str]:
    """Suffix -> modality for media files (modalities whose items are strings, text, are excluded: a stray
    notes.txt is not an example)."""
    table: dict[str, str] = {}
    for name in MODALITIES.names():
        if not MODALITIES.get(name).is_file:
            continue
        for ext in MODALITIES.get(name).extensions:
            table.setdefault(ext.lower(), name)
    return table


def read_folder(root: str | Path) -> list[dict[str, Any]]:
    """Rows of a folder of class folders: every file (searched recursively, hidden ones skipped)
    whose type a registered media modality (not text) reads becomes ``{"path": absolute path, "label": class folder
    name, "modality": name}``; sorted by label, then path."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(root, "no such folder" if not root.exists() else "not a folder")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(root, "no class folders (expected one subfolder per label, holding its files)")
    kinds = _modality_by_suffix()
    rows = []
    for folder in classes:
        for file in sorted(folder.rglob("*")):
            rel = file.relative_to(folder)
            if any(part.startswith(".") for part in rel.parts) or not file.is_file():
                continue
            modality = kinds.get(file.suffix.lower())
            if modality is not None:
                rows.append({"path": str(file.resolve()), "label": folder.name, "modality": modality})
    if not rows:
        raise DataError(root, f"no media files in the class folders (known types: {', '.join(sorted(kinds))})")
    return rows


def load_media_manifest(source: str | Path, required: Sequence[str] = ()) -> tuple[list[dict[str, Any]], Path]:
    """``(rows, root)`` of a manifest file (root = its folder) or a folder of class folders (root =
    the folder; its rows hold absolute paths)."""
    source = Path(source).expanduser()
    if source.is_dir():
        rows = read_folder(source)
        missing = [c for c in required if c not in rows[0]]
        if missing:
            raise DataError(source, f"missing required column(s) {missing}; a class folder gives {sorted(rows[0])}")
        return rows, source
    return read_manifest(source, required), source.parent


class MediaDataset(Dataset):
    """Manifest rows -> preprocessed samples of one or more modalities.

    ``columns`` maps a modality name to the row column holding its input (a path, relative to
    ``root`` unless absolute; the caption itself for text); ``specs`` gives each modality's
    preprocessing settings. ``on_error="skip"`` turns a bad row into ``None`` (dropped by
    :meth:`collate_fn`) and records ``(source, problem)`` in ``skipped``; ``"raise"`` re-raises.
    Modalities in ``optional`` may be absent from a row (an empty cell or a missing file): batches then
    carry ``"present": {modality: BoolTensor [B]}`` and a zero placeholder for each absent input.
    ``views`` maps a modality to a train-time loader ``fn(path or item) -> sample`` (a random augmented
    view, a caption written into a random prompt) used instead of its ``load``."""

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        columns: dict[str, str],
        specs: dict[str, Any],
        root: str | Path | None = None,
        label_column: str | None = "label",
        on_error: str = "raise",
        manifest: str | None = None,
        optional: Sequence[str] = (),
        views: dict[str, Callable[[Path], Any]] | None = None,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ConfigError(f"on_error {on_error!r} is not 'raise' or 'skip'")
        for m in columns:
            if m not in MODALITIES:
                raise ConfigError(f"unknown modality {m!r}; known: {MODALITIES.names()}")
            if m not in specs:
                raise ConfigError(f"no preprocessing spec for modality {m!r}")
        self.rows, self.columns, self.specs = rows, dict(columns), specs
        self.root = Path(root) if root is not None else None
        self.label_column, self.on_error, self.manifest = label_column, on_error, manifest
        self.optional = tuple(optional)
        self.views = dict(views or {})
        unknown = [m for m in self.optional if m not in self.columns]
        if unknown:
            raise ConfigError(f"optional modalities {unknown} are not among the columns {list(self.columns)}")
        self.skipped: list[tuple[str, str]] = []
        self._reported = 0  # skipped entries already handed out by collate_fn (per process)

    def __len__(self) -> int:
        return len(self.rows)

    def _where(self, i: int) -> str:
        return f"{self.manifest} row {i}" if self.manifest else f"row {i}"

    def _load(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        sample: dict[str, Any] = {}
        for m, col in self.columns.items():
            value, mod = row.get(col), MODALITIES.get(m)
            empty = value is None or (isinstance(value, str) and not value.strip() and mod.is_file)
            if m in self.optional and (empty or (mod.is_file and not resolve_path(self.root, value).exists())):
                sample[m] = None  # absent modality: the row still counts
                continue
            if empty:
                raise DataError(self._where(i), f"no value in column {col!r} for {m}")
            if mod.is_file and not isinstance(value, (str, Path)):
                raise DataError(self._where(i), f"column {col!r} holds {type(value).__name__}, not a file path")
            if m in self.views:
                sample[m] = self.views[m](resolve_path(self.root, value) if mod.is_file else value)
            elif mod.is_file:
                sample[m] = mod.load(resolve_path(self.root, value), self.specs[m])
            else:  # the item itself (a caption), checked by the modality
                sample[m] = mod.load(value, self.specs[m], source=self._where(i))
        if self.label_column:
            label = row.get(self.label_column)
            if label is None or str(label).strip() == "":
                raise DataError(self._where(i), f"no label in column {self.label_column!r}")
            sample["label"] = str(label)
        sample["index"] = i
        return sample

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        """``{modality: sample, ..., "label": str, "index": i}``; None for a skipped bad row."""
        try:
            return self._load(i)
        except DataError as exc:
            if self.on_error == "raise":
                raise
            self.skipped.append((exc.source, exc.problem))
            return None

    def collate_fn(self, samples: list[dict[str, Any] | None]) -> dict[str, Any] | None:
        """Batch of the non-None samples: ``{modality: tower batch dict, "labels": [str] (when a
        label column is set), "index": LongTensor [B], "skipped": [(source, problem)] recorded since
        the previous batch in this process}``; None if every sample was skipped."""
        good = [s for s in samples if s is not None]
        if not good:  # its skips are handed out with the next batch of this process
            return None
        fresh = self.skipped[self._reported :]
        self._reported = len(self.skipped)
        batch: dict[str, Any] = {}
        for m in self.columns:
            items = [s[m] for s in good]
            if m in self.optional:
                batch.setdefault("present", {})[m] = torch.tensor([x is not None for x in items], dtype=torch.bool)
                filler = next((x for x in items if x is not None), None)
                if filler is None:
                    batch[m] = None  # no sample of this batch has the modality
                    continue
                blank = torch.zeros_like(filler) if isinstance(filler, torch.Tensor) else filler
                items = [blank if x is None else x for x in items]
            batch[m] = MODALITIES.get(m).collate(items, self.specs[m])
        if self.label_column:
            batch["labels"] = [s["label"] for s in good]
        batch["index"] = torch.tensor([s["index"] for s in good], dtype=torch.long)
        batch["skipped"] = list(fresh)
        return batch
