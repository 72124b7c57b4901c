"""Text: captions and prompts, tokenised with the backbone's tokenizer at collate time.

``load(text, spec)`` gives the stripped string (a ``Path`` to a ``.txt`` file gives its stripped
contents); ``collate`` tokenises a list of strings into ``{"input_ids": [B, L], "attention_mask":
[B, L], ...}`` (``L <= spec.max_length``; padded to the longest item or to ``max_length``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from xmodal.errors import ConfigError, DataError
from xmodal.modalities.base import MODALITIES, TextSpec
from xmodal.modalities.image import check_file

EXTENSIONS = (".txt",)
PADDINGS = ("longest", "max_length")


def read_text_file(path: str | Path) -> str:
    """The UTF-8 contents of the text file ``path`` (a DataError if missing or not UTF-8)."""
    path = check_file(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text") from None
    except OSError as exc:
        raise DataError(path, f"unreadable text file ({exc.strerror or exc})") from None


def check_utf8(item: Any, where: str = "<text>") -> str:
    """``item`` itself if it is a string that can be written as UTF-8; a DataError naming ``where``
    otherwise."""
    if not isinstance(item, str):
        raise DataError(where, f"text is not a string (got {type(item).__name__})")
    try:
        item.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(where, f"invalid character {item[exc.start]!r} at position {exc.start} "
                               "(an invalid UTF-8 byte or a lone surrogate)") from None
    return item


def check_text(item: Any, where: str = "<text>") -> str:
    """``item`` stripped, after checking it is a non-empty string that can be written as UTF-8; a
    DataError naming ``where`` otherwise (a lone surrogate is what Python makes of an invalid UTF-8
    byte in a command-line argument, and tokenizers reject it with a TypeError)."""
    text = check_utf8(item, where).strip()
    if not text:
        raise DataError(where, "empty text")
    return text


class TextModality:
    """Strings; a ``Path`` ending ``.txt`` is read as a file."""

    name = "text"
    extensions = EXTENSIONS
    spec_cls = TextSpec
    is_file = False
    frames_of = None
    visual = False

    def load(self, item: Any, spec: TextSpec | None = None, source: str | None = None) -> str:
        """The stripped caption ``item``; a DataError naming ``source`` (or the file, or ``<text>``)
        if it is empty, whitespace only or not a string."""
        where = source
        if isinstance(item, Path):
            where = str(item)
            item = read_text_file(item)
        where = where or "<text>"
        if not isinstance(item, str):
            raise DataError(where, f"caption is not text (got {type(item).__name__})")
        if not item.strip():
            raise DataError(where, "empty caption")
        return check_text(item, where)

    def collate(self, items: list[str], spec: TextSpec) -> dict[str, torch.Tensor]:
        """Tokenise ``items`` with ``spec.tokenizer`` (truncating to ``spec.max_length``) into a plain
        dict of ``[B, L]`` LongTensors with at least ``input_ids`` and ``attention_mask``."""
        if not items:
            raise ValueError("cannot collate an empty list of texts")
        if spec is None or spec.tokenizer is None:
            raise ConfigError("text spec has no tokenizer")
        if spec.padding not in PADDINGS:
            raise ConfigError(f"text padding {spec.padding!r} is not one of {PADDINGS}")
        items = [check_utf8(t, f"<text {i}: {t!r:.40}>") for i, t in enumerate(items)]
        batch = spec.tokenizer(
            list(items), padding=spec.padding, truncation=True, max_length=spec.max_length, return_tensors="pt"
        )
        out = {k: v for k, v in dict(batch).items() if isinstance(v, torch.Tensor)}
        if "attention_mask" not in out:
            out["attention_mask"] = torch.ones_like(out["input_ids"])
        return out

    def duration(self, path: Path) -> None:
        return None  # text has no time axis

    def still(self, path: Path) -> None:
        return None  # text is not shown as a picture


MODALITIES.register("text", TextModality())
