"""Damaged index files: each is a one-line error naming the file with the way out, through the API and
the CLI; ``xmodal index --repair`` rebuilds the derived files, and refuses (one line) a damaged store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xmodal.cli.main import main
from xmodal.errors import CheckpointError
from xmodal.index import BuildConfig, Index


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _edit_meta(folder: Path, edit) -> None:
    meta = json.loads((folder / "ann.json").read_text())
    edit(meta)
    (folder / "ann.json").write_text(json.dumps(meta))


def _ivf_without_nprobe(meta: dict) -> None:
    meta["modalities"]["image"]["kind"] = "ivf"
    meta["modalities"]["image"].pop("nprobe", None)


DAMAGE = {  # case -> (how the index folder is damaged, whether --repair can fix it)
    "faiss truncated": (lambda f: _truncate(f / "ann.image.faiss"), True),
    "faiss garbage": (lambda f: (f / "ann.image.faiss").write_bytes(b"junk" * 64), True),
    "faiss of another modality": (lambda f: (f / "ann.image.faiss").write_bytes((f / "ann.video.faiss").read_bytes()),
                                  True),
    "ann.json malformed": (lambda f: (f / "ann.json").write_text('{"generation": 3, "modal'), True),
    "ann.json wrong shape": (lambda f: (f / "ann.json").write_text('[1, 2, 3]'), True),
    "ivf entry without nprobe": (lambda f: _edit_meta(f, _ivf_without_nprobe), True),
    "sqlite garbage": (lambda f: (f / "index.sqlite").write_bytes(b"\x00garbage" * 512), False),
    "sqlite truncated": (lambda f: _truncate(f / "index.sqlite"), False),
}


@pytest.fixture
def built(media, tiny_model_dir, tmp_path) -> Path:
    out = tmp_path / "ix"
    Index.build([media / "images", media / "videos"], model=str(tiny_model_dir), out=out,
                config=BuildConfig(progress=False)).close()
    assert not (out / "index.sqlite-wal").exists()  # the closed store is one file
    return out


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_file_is_one_line_error_with_a_way_out(case, built, capsys):
    damage, repairable = DAMAGE[case]
    damage(built)
    with pytest.raises(CheckpointError) as err:
        Index.load(built)
    message = str(err.value)
    assert "\n" not in message and str(built) in message
    assert ("--repair" in message) if repairable else ("build the index again" in message)
    assert main(["search", str(built), "a red circle"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmodal search: error:")
    if repairable:
        assert main(["index", "--repair", "--out", str(built)]) == 0
        assert "repaired" in capsys.readouterr().out
        assert main(["search", str(built), "a red circle", "-k", "2"]) == 0
        assert len(capsys.readouterr().out.strip().splitlines()) == 2
    else:
        assert main(["index", "--repair", "--out", str(built)]) == 2
        repair_err = capsys.readouterr().err.strip().splitlines()
        assert len(repair_err) == 1 and "cannot be repaired" in repair_err[0]


def test_repair_of_a_sound_index_keeps_its_results(built):
    before = [h.path for h in Index.load(built).search("a green square", k=5)]
    fixed = Index.repair(built)
    assert [h.path for h in fixed.search("a green square", k=5)] == before
    meta = json.loads((built / "ann.json").read_text())
    assert set(meta["files"]) == {"image", "video"} and meta["files"]["image"]["bytes"] > 0


def _flat_in_place_of_ivfpq(folder: Path) -> None:
    """A sound flat index of the same rows where ann.json (size and hash updated) says ivfpq."""
    import faiss

    from xmodal.index.ann import save_ann
    from xmodal.index.store import Store
    from xmodal.index.verify import file_record

    store = Store(folder)
    ids, vecs = store.vectors("image", 64)
    store.close()
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(64))
    flat.add_with_ids(vecs, ids)
    save_ann(flat, folder / "ann.image.faiss")
    _edit_meta(folder, lambda meta: meta["files"].update(image=file_record(folder / "ann.image.faiss")))


IVFPQ_DAMAGE = {  # case -> how an ivfpq index folder is damaged (all repairable)
    "faiss truncated": lambda f: _truncate(f / "ann.image.faiss"),
    "faiss garbage": lambda f: (f / "ann.image.faiss").write_bytes(b"junk" * 64),
    "ivfpq entry without nprobe": lambda f: _edit_meta(f, lambda m: m["modalities"]["image"].pop("nprobe")),
    "flat file where ann.json says ivfpq": _flat_in_place_of_ivfpq,
}


WHY = {"faiss truncated": "truncated or replaced", "faiss garbage": "truncated or replaced",
       "ivfpq entry without nprobe": "ivfpq entry 'image' has no valid nprobe",
       "flat file where ann.json says ivfpq": "is a flat index, ann.json says ivfpq"}


@pytest.mark.parametrize("case", list(IVFPQ_DAMAGE))
def test_damaged_ivfpq_file_is_one_line_error_and_repair_rebuilds_ivfpq(case, ivfpq_folder):
    IVFPQ_DAMAGE[case](ivfpq_folder)
    with pytest.raises(CheckpointError) as err:
        Index.load(ivfpq_folder)
    message = str(err.value)
    assert "\n" not in message and str(ivfpq_folder) in message and "--repair" in message
    assert WHY[case] in message
    fixed = Index.repair(ivfpq_folder)
    assert fixed.params["image"]["kind"] == "ivfpq" and len(fixed.search(np.ones(64, np.float32), k=3)) == 3
    fixed.close()
    assert Index.load(ivfpq_folder).params["image"]["kind"] == "ivfpq"
