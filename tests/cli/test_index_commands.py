"""``xmodal index`` / ``xmodal search`` on a tiny world: output, --json, filters, errors, shards + merge."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from xmodal.cli.main import main

_spec = importlib.util.spec_from_file_location("_index_fixtures", Path(__file__).parents[1] / "index" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
tiny_world_src, media, tiny_model_dir = _fixtures.tiny_world_src, _fixtures.media, _fixtures.tiny_model_dir


def test_index_search_json_and_rerun(media, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "ix"
    assert main(["index", str(media), "--model", str(tiny_model_dir), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "embedded 11" in text and "skipped 3" in text and "model has no audio tower" in text
    assert main(["index", str(media), "--out", str(out), "--no-progress"]) == 0  # model recorded; nothing new
    assert "embedded 0" in capsys.readouterr().out
    assert main(["search", str(out), "a red circle", "-k", "3", "--json", "--modality", "video"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and {h["modality"] for h in hits} == {"video"} and "score" in hits[0]
    img = sorted((media / "images").iterdir())[0]
    assert main(["search", str(out), "--image", str(img), "-k", "1"]) == 0
    assert str(img.resolve()) in capsys.readouterr().out


def test_shards_merge_and_errors(media, tiny_model_dir, tmp_path, capsys):
    for i in range(2):
        assert main(["index", str(media), "--model", str(tiny_model_dir), "--out", str(tmp_path / f"s{i}"),
                     "--shard", f"{i}/2", "--no-progress"]) == 0
    assert main(["index", "--merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "all")]) == 0
    assert "11 files" in capsys.readouterr().out
    assert main(["search", str(tmp_path / "all"), "a", "--image", "x.png"]) == 2
    assert main(["search", str(tmp_path / "nothing"), "a red circle"]) == 2
    assert main(["index", str(media), "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert "exactly one query" in err and "not an xmodal index" in err and "--model is required" in err
