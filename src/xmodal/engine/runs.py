"""Run records: what a run folder was trained with, so that a re-run resumes only the same run.

``run.json`` in a run folder holds the command, its full config and a fingerprint of its data (each
manifest row, plus the size and modification time of every file a row names: cheap, no file is
read) and of its model folder. A re-run into the folder resumes (or reports the run done) when all
three match; otherwise it is refused with one line naming what differs, unless ``overwrite``, which
removes the folder's training output and starts over.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from xmodal.errors import ConfigError

RECORD = "run.json"  # the run record in a run folder
OUTPUTS = ("train_state", "train", "log.jsonl", "model", "base", "metrics.json", "results.json", "robustness.png",
           RECORD)  # what a training command writes in its run folder (removed by overwrite)
NOT_RUN = ("progress", "verbose", "num_workers", "feature_store")  # settings that do not change what a run
# computes (where frozen features are kept: the store returns what encoding would)


def fingerprint(rows: Sequence[dict[str, Any]] | None, root: str | Path | None) -> str:
    """A hash of the rows and of the size and mtime of each file a cell names (relative to ``root``)."""
    digest = hashlib.sha256()
    base = Path(root) if root is not None else Path()
    for row in rows or []:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode("utf-8", "surrogatepass"))
        for value in row.values():
            digest.update(_stat(base, value).encode())
    return digest.hexdigest()[:32]


def _stat(base: Path, value: Any) -> str:
    """``size:mtime`` of the file ``value`` names, "" when it names none."""
    if not isinstance(value, str) or not value or len(value) > 4096:
        return ""
    try:
        st = (base / value).stat()
    except (OSError, ValueError):
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}" if os.path.isfile(base / value) else ""


def folder_fingerprint(path: str | Path) -> str:
    """The :func:`fingerprint` of a model folder's files ("" when ``path`` is a name, not a folder)."""
    path = Path(path)
    if not path.is_dir():
        return ""
    files = sorted(str(f.relative_to(path)) for f in path.rglob("*") if f.is_file())
    return fingerprint([{"file": f} for f in files], path)


def _strip(config: Any) -> Any:
    """``config`` without the settings of :data:`NOT_RUN`."""
    if isinstance(config, dict):
        return {k: _strip(v) for k, v in config.items() if k not in NOT_RUN}
    return config


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two records."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def open_run(out: str | Path, command: str, config: dict[str, Any], data: dict[str, str], overwrite: bool = False) -> bool:
    """Check the run folder ``out`` against this run (see the module doc) and record the run in it.
    True when ``out`` already held this run (it resumes or is done)."""
    out = Path(out)
    record = json.loads(json.dumps({"command": command, "config": _strip(config), "data": data}, default=str))
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a run folder")
    file = out / RECORD
    trained = any((out / name).exists() for name in OUTPUTS if name != RECORD)  # a record alone: nothing to lose
    if file.is_file() and trained:
        try:
            old = json.loads(file.read_text())
        except (ValueError, UnicodeDecodeError):
            old = {}
        if old == record:
            return True
        changed = _differences(old if isinstance(old, dict) else {}, record)
        reason = f"holds a run with a different {', '.join(changed[:4])}{' ...' if len(changed) > 4 else ''}"
    elif trained and not file.is_file():
        reason = f"holds training output without a run record ({RECORD})"
    else:
        reason = ""
    if reason and not overwrite:
        raise ConfigError(f"--out {out}: {reason}; pass --overwrite to start over, or choose another --out")
    for name in OUTPUTS if reason else ():
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, file)
    return False
