"""Reports: results.json + report.md (tables, embedded plots) in one folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence


def fmt(value: Any) -> str:
    """Human formatting: fractions as percentages are left to callers; floats to 4 significant digits."""
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-Markdown table of ``rows`` (dicts), columns in order of first appearance."""
    if not rows:
        return "(no rows)\n"
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain aligned table for the terminal."""
    if not rows:
        return "(no rows)"
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_report(out: str | Path, results: dict[str, Any], title: str, sections: Sequence[tuple[str, str]],
                 plots: Sequence[tuple[str, Path]] = ()) -> dict[str, Path]:
    """Write ``results.json`` and ``report.md`` (sections of Markdown, then plots) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    parts = [f"# {title}\n"]
    for heading, body in sections:
        parts.append(f"## {heading}\n\n{body}\n")
    if plots:
        parts.append("## Plots\n")
        for caption, path in plots:
            parts.append(f"**{caption}**\n\n![{caption}]({Path(path).relative_to(out)})\n")
    (out / "report.md").write_text("\n".join(parts))
    return {"results": out / "results.json", "report": out / "report.md"}
