"""Index data safety: no silent pruning of a vanished root, manifests cannot make an outside folder a
root, and a failed merge leaves nothing behind."""

from __future__ import annotations

import shutil

import pytest

from xmodal.cli.main import main
from xmodal.errors import DataError
from xmodal.index import BuildConfig, Index

QUIET = BuildConfig(progress=False, chunk=8)


def test_emptied_root_is_not_pruned_without_prune(media, tiny_model_dir, tmp_path, capsys):
    out, images = tmp_path / "ix", media / "images"
    args = ["index", str(images), "--model", str(tiny_model_dir), "--out", str(out), "--no-progress"]
    assert main(args) == 0 and "embedded 8" in capsys.readouterr().out
    backup = tmp_path / "backup"
    shutil.move(images, backup)
    images.mkdir()  # the folder is there but empty (an unmounted mount point)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "all of its indexed files are gone" in err[0] and "--prune" in err[0]
    assert len(Index.load(out)) == 8  # nothing deleted
    assert main(args + ["--prune"]) == 0 and "deleted 8" in capsys.readouterr().out
    assert len(Index.load(out)) == 0


def test_losing_over_half_a_root_is_refused_but_a_few_deletions_are_not(media, audio_model, tmp_path):
    out, images = tmp_path / "ix", sorted((media / "images").iterdir())
    Index.build([media / "images"], model=audio_model, out=out, config=QUIET).close()
    for f in images[:5]:  # 5 of 8 gone
        f.unlink()
    with pytest.raises(DataError, match="5 of 8"):
        Index.build([media / "images"], model=audio_model, out=out, config=QUIET)
    assert len(Index.load(out, model=audio_model)) == 8
    images[5].unlink()  # with --prune the rows go
    pruned = Index.build([media / "images"], model=audio_model, out=out, config=BuildConfig(progress=False, prune=True))
    assert pruned.last_report.deleted == 6 and len(pruned) == 2
    pruned.close()
    small = tmp_path / "small"
    Index.build([media], model=audio_model, out=small, config=QUIET).close()
    (media / "audio" / sorted((media / "audio").iterdir())[0].name).unlink()  # 1 of the root's 14 files
    assert Index.build([media], model=audio_model, out=small, config=QUIET).last_report.deleted == 1


def test_manifest_rows_outside_its_folder_are_refused(media, tiny_lit, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.png"
    shutil.copy(sorted((media / "images").iterdir())[0], secret)
    first = sorted((media / "images").iterdir())[1].name
    manifest = media / "list.csv"
    manifest.write_text(f"path,label\nimages/{first},a\n../outside/secret.png,b\n{secret},c\n")
    idx = Index.build([manifest], model=tiny_lit, out=tmp_path / "ix", config=QUIET)
    assert idx.roots() == [str(media.resolve())] and len(idx) == 1
    refused = [(p, why) for p, why in idx.last_report.skipped if "outside the manifest's folder" in why]
    assert len(refused) == 2
    assert all(not h.path.startswith(str(outside)) for h in idx.search("a red circle", k=10))


def test_failed_merge_leaves_no_index_behind(media, tiny_model_dir, tmp_path, capsys):
    s0 = tmp_path / "s0"
    assert main(["index", str(media), "--model", str(tiny_model_dir), "--out", str(s0), "--shard", "0/2",
                 "--no-progress"]) == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "index.sqlite").write_bytes(b"not a database at all" * 10)
    for shards in ([s0, tmp_path / "missing"], [s0, bad]):
        assert main(["index", "--merge", *map(str, shards), "--out", str(tmp_path / "all")]) == 2
        assert not (tmp_path / "all").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".all")] == []
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
    assert main(["index", "--merge", str(s0), "--out", str(tmp_path / "all")]) == 0
    assert len(Index.load(tmp_path / "all")) == len(Index.load(s0))
