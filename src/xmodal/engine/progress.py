"""Progress bars that show only where a person watches: on a terminal, never in logs or pipes.

``progress(iterable, enabled=..., desc=...)`` is tqdm with ``disable=None`` (tqdm's own test of
whether stderr is a terminal) when ``enabled``; ``XMODAL_PROGRESS=1`` forces bars on and ``=0`` off.
Per-epoch summary lines (``engine.fit``) are printed either way, so a log still records each epoch.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from tqdm.auto import tqdm


def bars_disabled(enabled: bool = True) -> bool | None:
    """tqdm's ``disable`` for a bar the caller wants ``enabled``: None (= only on a terminal), or True."""
    forced = os.environ.get("XMODAL_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return forced == "0" or not enabled
    return None if enabled else True


def quiet_library_bars() -> None:
    """Hide the progress bars of the libraries xmodal drives (transformers / huggingface_hub: "Loading
    weights", "Writing model shards") when stderr is no terminal, unless ``XMODAL_PROGRESS=1``; call it
    before transformers is imported (the command line does)."""
    import sys

    forced = os.environ.get("XMODAL_PROGRESS", "").strip()
    if forced == "0" or (forced != "1" and not sys.stderr.isatty()):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def progress(iterable: Iterable[Any] | None = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``), quiet unless on a terminal."""
    return tqdm(iterable, disable=bars_disabled(enabled), **kwargs)
