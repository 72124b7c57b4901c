"""Run records: the same run resumes, another config or data is refused unless overwrite."""

from __future__ import annotations

import os

import pytest

from xmodal.engine.runs import RECORD, fingerprint, folder_fingerprint, open_run
from xmodal.errors import ConfigError


def _data(tmp_path):
    (tmp_path / "a.png").write_bytes(b"12345")
    return [{"path": "a.png", "caption": "a thing"}]


def test_fingerprint_follows_rows_and_file_size_and_mtime(tmp_path):
    rows = _data(tmp_path)
    first = fingerprint(rows, tmp_path)
    assert fingerprint(rows, tmp_path) == first
    assert fingerprint([{**rows[0], "caption": "another"}], tmp_path) != first
    os.utime(tmp_path / "a.png", ns=(1, 1))
    touched = fingerprint(rows, tmp_path)
    assert touched != first
    (tmp_path / "a.png").write_bytes(b"123456")
    os.utime(tmp_path / "a.png", ns=(1, 1))
    assert fingerprint(rows, tmp_path) != touched
    assert folder_fingerprint("not-a-folder") == "" and folder_fingerprint(tmp_path) != ""


def test_same_run_resumes_other_config_or_data_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    assert open_run(out, "align", {"fit": {"epochs": 2, "progress": True}}, {"train": "x"}) is False
    (out / "log.jsonl").write_text("{}\n")
    assert open_run(out, "align", {"fit": {"epochs": 2, "progress": False}}, {"train": "x"}) is True  # bars differ only
    with pytest.raises(ConfigError, match=r"different config\.fit\.epochs; pass --overwrite"):
        open_run(out, "align", {"fit": {"epochs": 3}}, {"train": "x"})
    with pytest.raises(ConfigError, match=r"different data\.train"):
        open_run(out, "align", {"fit": {"epochs": 2}}, {"train": "y"})
    assert (out / "log.jsonl").is_file()  # refused: nothing removed
    assert open_run(out, "align", {"fit": {"epochs": 2}}, {"train": "y"}, overwrite=True) is False
    assert not (out / "log.jsonl").exists() and (out / RECORD).is_file()


def test_output_without_a_record_and_a_file_as_out_are_refused(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model").mkdir()
    with pytest.raises(ConfigError, match="without a run record"):
        open_run(tmp_path / "old", "bind", {}, {})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        open_run(tmp_path / "file", "bind", {}, {}, overwrite=True)
    assert open_run(tmp_path / "new", "bind", {}, {}) is False
    assert open_run(tmp_path / "new", "bind", {"seed": 1}, {}) is False  # a record without output is replaced
