"""Model cards: the ``README.md`` written into every saved transfer folder and every export.

A card says what the folder holds and how it was made: the base model, the strategy and its config,
the task, the fingerprints of the run's data (from the run record ``run.json`` next to the model folder,
when the run has one), the run's metrics and efficiency figures, and how to load the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xmodal.engine.runs import RECORD

CARD = "README.md"


def run_record(model_folder: str | Path) -> dict[str, Any]:
    """The run record (``run.json``) of the run folder holding ``model_folder``, {} when there is none."""
    file = Path(model_folder).resolve().parent / RECORD
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _figure(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value, default=str)


def _table(values: dict[str, Any]) -> list[str]:
    rows = [f"| {key} | {_figure(value)} |" for key, value in values.items() if not isinstance(value, (dict, list))]
    return ["| | |", "|---|---|", *rows] if rows else ["(none recorded)"]


def card_text(meta: dict[str, Any], title: str, load: str, notes: list[str] = (), record: dict[str, Any] | None = None) -> str:
    """Markdown of a card for a transfer whose ``transfer.json`` is ``meta``; ``load`` is a Python snippet."""
    data = (record or {}).get("data") or {}
    lines = [f"# {title}", "", f"- **base model**: `{meta.get('base', '')}`",
             f"- **strategy**: `{meta.get('strategy', '')}`", f"- **task**: `{meta.get('task', '')}`", *[f"- {n}" for n in notes],
             "", "## Strategy config", "", "```json", json.dumps(meta.get("config", {}), indent=2, default=str), "```",
             "", "## Data", "", *([f"- {k} fingerprint: `{v}`" for k, v in data.items()] or ["(no run record with data fingerprints)"]),
             "", "## Metrics and efficiency", "", *_table(meta.get("metrics") or {}),
             "", "## How to load", "", "```python", load.strip(), "```", ""]
    return "\n".join(lines)


def write_card(folder: str | Path, text: str) -> Path:
    """Write ``text`` as the folder's ``README.md``."""
    path = Path(folder) / CARD
    path.write_text(text)
    return path
