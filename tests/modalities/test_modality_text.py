"""Captions and tokenisation with the real MiniLM (BERT) tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xmodal.errors import ConfigError, DataError
from xmodal.modalities import MODALITIES, TextSpec

TEXT = MODALITIES.get("text")


def test_load_strips_and_rejects_empty() -> None:
    assert TEXT.load("  a red circle \n", TextSpec()) == "a red circle"
    with pytest.raises(DataError, match=r"^<text>: empty caption$"):
        TEXT.load(" \t ", TextSpec())
    with pytest.raises(DataError, match="captions.csv row 3: empty caption"):
        TEXT.load("", TextSpec(), source="captions.csv row 3")
    with pytest.raises(DataError, match="not text"):
        TEXT.load(float("nan"), TextSpec())
    assert TEXT.load("notes.txt", TextSpec()) == "notes.txt"  # a string is a caption, never a path


def test_txt_file(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("a blue square\n", encoding="utf-8")
    assert TEXT.load(tmp_path / "c.txt", TextSpec()) == "a blue square"
    (tmp_path / "e.txt").write_text("  \n")
    with pytest.raises(DataError, match="e.txt: empty caption"):
        TEXT.load(tmp_path / "e.txt", TextSpec())
    with pytest.raises(DataError, match="gone.txt: no such file"):
        TEXT.load(tmp_path / "gone.txt", TextSpec())


def test_collate_tokenises(tokenizer) -> None:
    spec = TextSpec(tokenizer=tokenizer, max_length=6)
    batch = TEXT.collate(["a red circle", "hi", "one two three four five six seven"], spec)
    assert {"input_ids", "attention_mask"} <= set(batch) and type(batch) is dict
    assert batch["input_ids"].shape == (3, 6) and batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0]  # [CLS] hi [SEP] + padding
    assert batch["input_ids"][0, 0] == tokenizer.cls_token_id
    assert batch["input_ids"][2, -1] == tokenizer.sep_token_id  # truncated, still ends with [SEP]
    fixed = TEXT.collate(["hi"], TextSpec(tokenizer=tokenizer, max_length=10, padding="max_length"))
    assert fixed["input_ids"].shape == (1, 10)


def test_collate_needs_tokenizer() -> None:
    with pytest.raises(ConfigError, match="tokenizer"):
        TEXT.collate(["x"], TextSpec())


def test_invalid_utf8_and_lone_surrogates_are_data_errors(tokenizer) -> None:
    from xmodal.modalities.text import check_text

    bad = b"gr\xffeen".decode("utf-8", "surrogateescape")  # what Python makes of an invalid byte in argv
    with pytest.raises(DataError, match=r"^--classes: invalid character '\\udcff' at position 2"):
        check_text(bad, "--classes")
    with pytest.raises(DataError, match="pairs.jsonl row 4: invalid character"):
        TEXT.load("a \ud800 square", TextSpec(), source="pairs.jsonl row 4")
    with pytest.raises(DataError, match=r"<text 1: .*invalid character"):  # the tokenizer would raise TypeError
        TEXT.collate(["fine", bad], TextSpec(tokenizer=tokenizer))
    with pytest.raises(DataError, match="query: empty text"):
        check_text("  ", "query")
    assert check_text(" a\x00b ", "q") == "a\x00b"
